"""`portguard schema`: a valid draft 2020-12 schema that every bundled and scenario policy meets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from portguard.cli import main
from portguard.policy.load import ALLOW_KEYS, TOP_KEYS, parse_policy
from portguard.policy.schema import policy_schema

ROOT = Path(__file__).resolve().parent.parent
GOOD = sorted(
    [
        *ROOT.glob("policies/*.yaml"),
        *ROOT.glob("tests/scenarios/*/*.yaml"),
        *ROOT.glob("tests/scenarios_windows/*/*.yaml"),
        *ROOT.glob("ansible/examples/policies/*.yaml"),
    ]
)
# Bad policies only the loader can refuse: duplicate keys and aliases (lost by YAML parsers),
# encodings, YAML 1.1 number forms, meaning (services, addresses, sets, files, ranges), and
# the target: a 16-character interface is a Windows alias, refused on Linux only.
SEMANTIC_ONLY = {
    "16-duplicate-top-key", "17-duplicate-entry-key", "18-duplicate-set-name",
    "25-utf16-with-bom", "27-alias", "31-port-range-reversed",
    "33-port-range-end-out-of-range", "41-unknown-service", "42-service-without-udp",
    "44-bad-ipv4", "45-bad-ipv6", "46-ipv4-prefix-33", "47-ipv6-prefix-129",
    "48-ipv6-zone-index", "49-unknown-set", "50-set-file-missing", "51-set-file-is-directory",
    "52-set-file-bad-line", "53-set-file-not-utf8", "92-port-base60", "93-port-octal",
    "94-port-hex", "96-limit-5000-digits", "97-comment-lone-surrogate",
    "98-set-file-shadow-line", "99-version-octal",
    "67-interface-too-long", "91-interface-wildcard-too-long",
}  # fmt: skip


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    """A draft 2020-12 validator of the policy schema (the schema itself checked first)."""
    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`portguard schema` prints the schema as JSON, draft 2020-12."""
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == policy_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_keys_are_the_loaders_keys() -> None:
    """Top-level and allow-entry keys are exactly the ones policy/load.py accepts."""
    schema = policy_schema()
    assert tuple(schema["properties"]) == TOP_KEYS
    assert tuple(schema["$defs"]["allow_entry"]["properties"]) == ALLOW_KEYS


@pytest.mark.parametrize("path", GOOD, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_and_scenario_policy_validates(
    path: Path, validator: Draft202012Validator
) -> None:
    """Each policy the project ships or tests with is valid under the schema."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_structurally_bad_policies_fail_the_schema(validator: Draft202012Validator) -> None:
    """Every tests/bad policy that YAML can read is refused, but those only the loader knows."""
    assert len(GOOD) >= 20
    accepted = []
    for path in sorted((ROOT / "tests/bad").glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_bytes())
        except (yaml.YAMLError, ValueError):  # YAML cannot read it: the loader's job
            continue
        if validator.is_valid(document):
            accepted.append(path.stem)
    assert set(accepted) <= SEMANTIC_ONLY, sorted(set(accepted) - SEMANTIC_ONLY)
    refused = sum(1 for _ in (ROOT / "tests/bad").glob("*.yaml")) - len(accepted)
    assert refused >= 40


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ({"port": 22}, True),
        ({"port": "8000-8010", "proto": ["tcp", "udp"]}, True),
        ({"service": "dns", "from": "@lan"}, True),
        ({"port": 22, "limit": "0/minute"}, False),
        ({"port": 22, "service": "ssh"}, False),
        ({"proto": "tcp"}, False),
        ({"port": 0}, False),
        ({"port": 22, "interface": "Ethernet 2"}, True),
        ({"port": 22, "interface": "bad,name"}, False),
        ({"port": 22, "interface": "trailing "}, False),
        ({"port": 22, "proto": "icmp"}, False),
        ({"port": 22, "from": []}, False),
    ],
)
def test_allow_entry_shapes(
    entry: dict[str, object], valid: bool, validator: Draft202012Validator
) -> None:
    """Entries the loader accepts validate; ones it refuses for their shape do not."""
    assert validator.is_valid({"version": 1, "allow": [entry]}) is valid


def _readme_yaml_blocks() -> list[str]:
    """The ```yaml blocks of the README that are policies (they have `version:`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    return [b for b in blocks if "version: 1" in b]


def test_readme_quick_start_shows_the_modeline_and_validates(
    validator: Draft202012Validator,
) -> None:
    """The README's policies carry the yaml-language-server modeline and meet the schema."""
    blocks = _readme_yaml_blocks()
    assert len(blocks) >= 2
    first = blocks[0]
    assert first.startswith("# yaml-language-server: $schema=portguard-policy.schema.json\n")
    for block in blocks:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(block))]
        assert errors == []
    loaded = parse_policy(first.encode(), "quick-start.yaml")
    assert len(loaded.policy.allow) == 3
    assert loaded.warnings == ()

#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection in ansible/, offline but for PyPI.
# ansible-test needs the collection under ansible_collections/NAMESPACE/NAME and bootstraps
# pip in its venvs from ci-files.testing.ansible.com; where that is unreachable, a local
# stand-in bootstrap (ensurepip, then pip install from PyPI) is put in its cache first.
# Uses the test suite's ansible-core venv (.venv/ansible-core, made by tests/test_ansible.py).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv/ansible-core
if [ ! -x "$venv/bin/ansible-test" ]; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q 'ansible-core>=2.17,<2.20'
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
home=$root/.venv/ansible-test-home   # ansible-test's venvs and cache, kept between runs
mkdir -p "$home/.ansible/test/cache"
# The pip version ansible-test bootstraps (its infrastructure_packages pin, e.g. pip='24.2').
pip_version=$("$venv/bin/python" - <<'PY'
import pathlib, re, ansible_test
text = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PY
)
bootstrap=$home/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -e "$bootstrap" ]; then
    cat >"$bootstrap" <<'PY'
# Local stand-in for ansible-test's get-pip bootstrap: ensurepip, then pip install ARGS.
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
PY
fi
target=$work/ansible_collections/portguard/firewall
mkdir -p "$target"
cp -r ansible/. "$target"
cd "$target"
git init -q . && git add -A   # ansible-test lists the collection's files through git
HOME=$home "$venv/bin/ansible-test" sanity --python "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --requirements "$@"

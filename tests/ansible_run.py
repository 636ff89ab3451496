"""ansible-core from PyPI in a private venv, the collection installed, playbooks run over SSH.

The venv lives in this checkout's .venv/ansible-core (made once, reused; `make clean` drops
it). ansible-core has no JSON stdout callback without ansible.posix (Galaxy is not reachable
here), so a tiny callback plugin written next to the config records every task result.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.netns import Netns
from tests.sshd_lab import SshLab

__all__ = ["ANSIBLE_CORE", "AnsibleProject", "PlaybookRun", "TaskResult", "ansible_venv"]

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_CORE = "ansible-core>=2.17,<2.20"
VENV = ROOT / ".venv" / "ansible-core"
PORTGUARD = ROOT / ".venv" / "bin" / "portguard"
PLAYBOOK_TIMEOUT = 600.0  # three hosts over SSH on a loaded machine
CALLBACK = '''\
"""Record every task result as JSON lines in $PG_ANSIBLE_RESULTS (test helper)."""
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "pg_results"
    CALLBACK_NEEDS_ENABLED = True

    def _add(self, status, result):
        row = {"host": result._host.get_name(), "task": result._task.get_name(),
               "status": status, "result": result._result}
        with open(os.environ["PG_ANSIBLE_RESULTS"], "a") as sink:
            sink.write(json.dumps(row, default=str) + "\\n")

    def v2_runner_on_ok(self, result):
        self._add("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._add("failed", result)

    def v2_runner_on_skipped(self, result):
        self._add("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._add("unreachable", result)
'''
CONFIG = """\
[defaults]
inventory = {work}/inventory.json
collections_path = {work}/collections
callback_plugins = {work}/callbacks
callbacks_enabled = pg_results
host_key_checking = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3
local_tmp = {work}/local-tmp
forks = 5
timeout = 60

[ssh_connection]
pipelining = True
control_path_dir = {work}/cp
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes \
-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o ConnectTimeout=30
"""


def ansible_venv() -> Path:
    """The private venv with ansible-core (made with the system Python on first use)."""
    playbook = VENV / "bin" / "ansible-playbook"
    if not playbook.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", ANSIBLE_CORE],
            check=True,
            timeout=900,
        )
    return VENV


@dataclass(frozen=True)
class TaskResult:
    """One task on one host, as the callback recorded it."""

    host: str
    task: str
    status: str  # ok | failed | skipped | unreachable
    result: dict[str, object]

    @property
    def changed(self) -> bool:
        """Whether the task reported a change."""
        return self.result.get("changed") is True


@dataclass(frozen=True)
class PlaybookRun:
    """A finished ansible-playbook: exit status, output, and the recorded task results."""

    returncode: int
    stdout: str
    stderr: str
    tasks: tuple[TaskResult, ...]

    def of(self, task: str) -> dict[str, TaskResult]:
        """The results of `task`, by host."""
        return {t.host: t for t in self.tasks if t.task == task}

    def explain(self) -> str:
        """The output, for an assertion message."""
        return f"rc={self.returncode}\n{self.stdout[-6000:]}\n{self.stderr[-3000:]}"


@dataclass(frozen=True)
class AnsibleProject:
    """A controller-side project directory: config, inventory, collection, callback."""

    lab: SshLab
    work: Path
    venv: Path

    @classmethod
    def create(cls, lab: SshLab, work: Path, venv: Path) -> AnsibleProject:
        """Write the config and callback and install the collection from ./ansible."""
        for sub in ("callbacks", "cp", "local-tmp", "collections"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "callbacks" / "pg_results.py").write_text(CALLBACK)
        (work / "ansible.cfg").write_text(CONFIG.format(work=work, known=lab.known_hosts))
        project = cls(lab, work, venv)
        galaxy = [str(venv / "bin" / "ansible-galaxy"), "collection", "install", "--force"]
        installed = subprocess.run(
            [*galaxy, str(ROOT / "ansible"), "-p", str(work / "collections")],
            capture_output=True,
            text=True,
            env=project.env(),
            timeout=300,
            check=False,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"ansible-galaxy failed: {installed.stdout}{installed.stderr}")
        return project

    def env(self) -> dict[str, str]:
        """The environment ansible runs in: its own HOME and config, a UTF-8 locale."""
        return {
            "PATH": f"{self.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.work),
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_CONFIG": str(self.work / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PG_ANSIBLE_RESULTS": str(self.work / "results.jsonl"),
        }

    def inventory(self, host_vars: dict[str, dict[str, object]]) -> None:
        """Write the inventory: every lab host with its own dest, state dir and `host_vars`."""
        hosts: dict[str, dict[str, object]] = {}
        for host in self.lab.hosts:
            hosts[host.name] = {
                "ansible_host": host.address,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.lab.identity),
                "ansible_remote_tmp": str(host.dir / "remote-tmp"),
                "pg_dest": str(host.dir / "etc" / "policy.yaml"),
                "pg_state_dir": str(host.dir / "state"),
                "pg_executable": str(PORTGUARD),
                **host_vars.get(host.name, {}),
            }
        inventory = {"all": {"hosts": hosts}}
        (self.work / "inventory.json").write_text(json.dumps(inventory, indent=2))

    def playbook(self, playbook: Path, *args: str) -> PlaybookRun:
        """Run ansible-playbook in the controller namespace; its results."""
        results = self.work / "results.jsonl"
        results.unlink(missing_ok=True)
        argv = [str(self.venv / "bin" / "ansible-playbook"), *args, str(playbook)]
        done = _in(self.lab.controller, argv, self.env(), self.work)
        rows = results.read_text().splitlines() if results.exists() else []
        tasks = tuple(TaskResult(**json.loads(row)) for row in rows)
        return PlaybookRun(done.returncode, done.stdout, done.stderr, tasks)


def _in(
    ns: Netns, argv: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=PLAYBOOK_TIMEOUT,
        check=False,
        cwd=cwd,
    )

"""Who did it: the name that goes into the deploy log and on the lock.

SUDO_USER names the person behind `sudo controlroom ...`, but anyone can set it: it counts only when the real uid
is 0. Everyone else is their own login name, whatever their environment says.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controlroom.core.identity import Actor, current_origin, current_user, session_origin
from controlroom.journal.journal import Journal
from tests.conftest import REPO

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv under /root
NOBODY = 65534


def login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return getpass.getuser()


def test_sudo_user_names_the_person_when_sudo_made_us_root():
    assert current_user(uid=0, environ={"SUDO_USER": "mygrant"}) == "mygrant"


def test_sudo_user_set_by_an_ordinary_user_is_ignored_for_the_login_name():
    assert current_user(uid=1000, environ={"SUDO_USER": "mygrant"}) == login_name()


def test_root_without_sudo_is_the_login_name():
    assert current_user(uid=0, environ={}) == login_name()
    assert current_user(uid=0, environ={"SUDO_USER": "  "}) == login_name()


def test_the_journal_records_the_actor_it_is_given_and_reads_no_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_CLIENT", "203.0.113.9 50022 22")  # this process's claim: not who the write says acts
    j = Journal.open(tmp_path / "state")
    try:
        entry = j.add_log(Actor("bob", "192.0.2.7"), "NOTE", "from bob's session")
        lock = j.take_lock(Actor("carol"), "db migration")
        assert (entry.user, entry.origin) == ("bob", "192.0.2.7")
        assert (lock.user, lock.origin) == ("carol", None)
        assert [(e.user, e.origin, e.text) for e in j.log()] == [
            ("bob", "192.0.2.7", "from bob's session"), ("carol", None, "db migration")]
        assert j.lock().origin is None
    finally:
        j.close()


def test_the_actor_here_is_this_processs_person_and_origin(monkeypatch):
    monkeypatch.setenv("SSH_CLIENT", "192.0.2.7 50022 22")
    assert Actor.here() == Actor(current_user(), "192.0.2.7")
    monkeypatch.delenv("SSH_CLIENT")
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    assert Actor.here() == Actor(current_user(), None)


def test_the_origin_is_the_ssh_client_address():
    assert current_origin({"SSH_CLIENT": "192.0.2.7 50022 22"}) == "192.0.2.7"
    assert current_origin({"SSH_CONNECTION": "198.51.100.1 40000 10.0.0.1 22"}) == "198.51.100.1"
    assert current_origin({}) is None
    assert current_origin({"SSH_CLIENT": "  "}) is None
    assert current_origin({"SSH_CLIENT": "alice@[bold]evil 1 22"}) is None  # only an address, never text


def _proc(root, pid: int, ppid: int, exe, uid: int = 0, sockets: dict[str, str] | None = None) -> None:
    """A process in a /proc of our making: its parent, binary, real uid and TCP connections (inode -> remote)."""
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "net").mkdir()
    (d / "stat").write_text(f"{pid} ({Path(exe).name}) S {ppid} {pid} {pid} 0 -1\n")
    (d / "status").write_text(f"Name:\t{Path(exe).name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "exe").symlink_to(exe)
    rows = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"]
    for i, (inode, remote) in enumerate((sockets or {}).items()):
        os.symlink(f"socket:[{inode}]", d / "fd" / str(3 + i))
        rows.append(f"   {i}: 0100007F:0016 {remote} 01 00000000:00000000 00:00000000 00000000     0        0 {inode}")
    (d / "net" / "tcp").write_text("\n".join(rows) + "\n")


def test_the_origin_of_a_peer_is_the_connection_of_the_root_sshd_serving_its_session(tmp_path):
    proc = tmp_path / "proc"
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("sshd", "sh", "python3"):
        shutil.copy("/bin/true", bin_ / name)
    _proc(proc, 1, 0, "/sbin/init")
    _proc(proc, 100, 1, bin_ / "sshd", sockets={"111": "00000000:0000"})  # the listener
    _proc(proc, 200, 100, bin_ / "sshd", sockets={"222": "0700000A:C350"})  # the [priv] monitor: 10.0.0.7:50000
    _proc(proc, 300, 200, bin_ / "sshd", uid=1000, sockets={"222": "0700000A:C350"})  # the user's own half
    _proc(proc, 400, 300, bin_ / "sh", uid=1000)
    _proc(proc, 500, 400, bin_ / "python3", uid=1000)  # the client: whatever its environment says
    assert session_origin(500, proc) == "10.0.0.7"
    # a program the user named sshd, running as the user, with a connection of its own: not sshd
    _proc(proc, 600, 1, bin_ / "sh", uid=1000)
    _proc(proc, 700, 600, bin_ / "sshd", uid=1000, sockets={"777": "09007100:0050"})
    _proc(proc, 800, 700, bin_ / "python3", uid=1000)
    assert session_origin(800, proc) is None
    assert session_origin(999, proc) is None  # gone
    writable = tmp_path / "w"  # a root sshd whose binary anyone may replace is not believed either
    writable.mkdir()
    shutil.copy("/bin/true", writable / "sshd")
    os.chmod(writable / "sshd", 0o777)
    _proc(proc, 900, 1, writable / "sshd", sockets={"999": "0700000A:C350"})
    _proc(proc, 901, 900, bin_ / "python3", uid=1000)
    assert session_origin(901, proc) is None


def _whoami(env: dict[str, str], uid: int | None = None) -> str:
    res = subprocess.run(
        [SYSTEM_PYTHON, "-c", "from controlroom.core.identity import current_user; print(current_user())"],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **env},
        user=uid,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.skipif(
    os.getuid() != 0 or not os.path.exists(SYSTEM_PYTHON), reason="needs root to switch users"
)
def test_a_real_non_root_process_cannot_claim_to_be_someone_else_with_sudo_user():
    assert _whoami({"SUDO_USER": "mygrant"}) == "mygrant"  # root, as sudo leaves it
    assert _whoami({"SUDO_USER": "mygrant"}, uid=NOBODY) != "mygrant"


def test_no_module_sets_an_ssh_address_in_its_environment_for_the_journal_to_find():
    import ast

    writes = []
    for path in sorted((REPO / "controlroom").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            keys = []
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                keys = [t.slice for t in targets if isinstance(t, ast.Subscript)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("pop", "setdefault", "putenv", "unsetenv", "update"):
                keys = node.args[:1]
            writes += [f"{path.relative_to(REPO)}:{node.lineno}" for k in keys
                       if isinstance(k, ast.Constant) and k.value in ("SSH_CLIENT", "SSH_CONNECTION")]
    assert not writes, f"who acts is an Actor handed to the journal, never an environment variable: {writes}"

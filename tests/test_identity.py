"""Who did it: the name that goes into the deploy log and on the lock.

SUDO_USER names the person behind `sudo controlroom ...`, but anyone can set it: it counts only when the real uid
is 0. Everyone else is their own login name, whatever their environment says.
"""

from __future__ import annotations

import getpass
import os
import subprocess

import pytest

from controlroom import journal
from controlroom.identity import current_origin, current_user, session_origin
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


def test_the_journal_names_the_same_person_as_identity():
    assert journal.current_user is current_user
    assert journal.current_origin is current_origin


def test_the_origin_is_the_ssh_client_address():
    assert current_origin({"SSH_CLIENT": "192.0.2.7 50022 22"}) == "192.0.2.7"
    assert current_origin({"SSH_CONNECTION": "198.51.100.1 40000 10.0.0.1 22"}) == "198.51.100.1"
    assert current_origin({}) is None
    assert current_origin({"SSH_CLIENT": "  "}) is None
    assert current_origin({"SSH_CLIENT": "alice@[bold]evil 1 22"}) is None  # only an address, never text


def _proc(root, pid: int, ppid: int, comm: str, environ: dict[str, str] | None = None) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    (d / "comm").write_text(comm + "\n")
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in (environ or {}).items()))


def test_the_origin_of_a_peer_is_read_from_the_process_sshd_started_not_from_the_peer(tmp_path):
    _proc(tmp_path, 1, 0, "systemd")
    _proc(tmp_path, 100, 1, "sshd")
    _proc(tmp_path, 200, 100, "sshd-session")  # OpenSSH 9.8: the session's own process
    _proc(tmp_path, 300, 200, "bash", {"SSH_CLIENT": "192.0.2.7 50022 22"})  # what sshd gave the login shell
    _proc(tmp_path, 400, 300, "tmux: ) S 1 (x", {"SSH_CLIENT": "203.0.113.9 1 22"})  # a name that tries to lie
    _proc(tmp_path, 500, 400, "controlroom", {"SSH_CLIENT": "203.0.113.9 1 22"})  # the client forges its own
    assert session_origin(500, tmp_path) == "192.0.2.7"
    _proc(tmp_path, 600, 1, "cron", {"SSH_CLIENT": "203.0.113.9 1 22"})
    _proc(tmp_path, 700, 600, "controlroom", {"SSH_CLIENT": "203.0.113.9 1 22"})
    assert session_origin(700, tmp_path) is None  # no SSH session: none, whatever it says
    assert session_origin(999, tmp_path) is None  # gone


def _whoami(env: dict[str, str], uid: int | None = None) -> str:
    res = subprocess.run(
        [SYSTEM_PYTHON, "-c", "from controlroom.identity import current_user; print(current_user())"],
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

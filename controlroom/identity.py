"""Who is at the keyboard, for the deploy log and the lock, and where they came from.

``SUDO_USER`` names the person behind a sudo session, but any process can set it: it is believed only when the real
uid is 0, that is when sudo (or root itself) started us. Everyone else is their login name.

The origin (the SSH client address) is what the server can see, never what a client says: ``session_origin`` walks
a peer process's ancestors in /proc up to the one sshd started and reads SSH_CLIENT from that process's environment,
which sshd set before the person typed anything. A process started outside any SSH session (a console, a tmux
server, a cron job) has no origin; nor has one whose session the server may not read (another user's processes,
when the server runs without root): the journal then records none rather than a guess.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

SSHD = ("sshd", "sshd-session")  # the process names of OpenSSH's session processes (9.8 split out sshd-session)
MAX_DEPTH = 64


def current_user(uid: int | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The person behind the session: SUDO_USER when the real uid is 0, else the login name.

    ``uid`` and ``environ`` default to this process's real uid and environment (parameters for tests).
    """
    env = os.environ if environ is None else environ
    real_uid = os.getuid() if uid is None else uid
    if real_uid == 0:
        sudo_user = env.get("SUDO_USER", "").strip()
        if sudo_user:
            return sudo_user
    try:
        return os.getlogin()
    except OSError:
        return getpass.getuser()


def current_origin(environ: Mapping[str, str] | None = None) -> str | None:
    """The SSH client address named in environ (default: this process's environment, which the server sets from
    session_origin for the request it is doing), when it is an IP address."""
    env = os.environ if environ is None else environ
    for var in ("SSH_CLIENT", "SSH_CONNECTION"):
        value = env.get(var)
        if value and value.split():
            try:
                return str(ipaddress.ip_address(value.split()[0]))
            except ValueError:
                return None
    return None


def session_origin(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The SSH client address of the session process ``pid`` runs in, from the environment sshd gave the process it
    started for that session; None outside an SSH session or where the server cannot read it."""
    for _ in range(MAX_DEPTH):
        parent = _parent(proc, pid)
        if parent is None or parent < 1:
            return None
        if _comm(proc, parent) in SSHD:
            return current_origin(environ_of(pid, proc))
        pid = parent
    return None


def environ_of(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """The environment process pid started with, from the kernel's copy; {} when it cannot be read."""
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _parent(proc: Path, pid: int) -> int | None:
    try:  # the name in parentheses may hold anything, spaces and parentheses too: the fields follow the last ")"
        return int((proc / str(pid) / "stat").read_text(errors="replace").rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comm(proc: Path, pid: int) -> str:
    try:
        return (proc / str(pid) / "comm").read_text(errors="replace").strip()
    except OSError:
        return ""

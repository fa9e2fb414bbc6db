"""Who is at the keyboard, for the deploy log and the lock, and where they came from: an ``Actor``.

Every journal write is given the Actor it records (a log entry, a lock, a flag change, a rollout, an override); no
environment variable carries it. The server builds it from what it can see of the requesting client (its socket
peer's credentials, its session's origin); the CLI's own writes build it from this process (``Actor.here``).

``SUDO_USER`` names the person behind a sudo session, but any process can set it: it is believed only when the real
uid is 0, that is when sudo (or root itself) started us. Everyone else is their login name.

The origin (the SSH client address) is what the server can see, never what a client says: ``session_origin`` walks
a peer process's ancestors in /proc up to the sshd that serves its session (the first ancestor that is an sshd
binary owned by root, running as root: sshd's privileged monitor, which nobody but root can start or change) and
takes the remote address of the TCP connection that process holds (its socket inodes, found in /proc/PID/net/tcp).
Not the SSH_CLIENT of any process's environment: the first process of a session can exec itself with another
environment, and anyone can name a program sshd. A process outside any SSH session (a console, a tmux server, cron)
has no origin; nor has one whose sshd the server may not look into (a server without root cannot read root's
/proc/PID/fd): the journal then records none rather than a guess.
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SSHD = ("sshd", "sshd-session")  # OpenSSH's binaries for a session's processes (9.8 split out sshd-session)
MAX_DEPTH = 64


@dataclass(frozen=True)
class Actor:
    """Who acts: the person, and the SSH client address they act from (None: not in an SSH session, or unknown)."""

    user: str
    origin: str | None = None

    @classmethod
    def here(cls) -> Actor:
        """This process's person and origin (current_user, current_origin): the CLI writing the journal itself."""
        return cls(current_user(), current_origin())


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
    """The SSH client address named in environ (default: this process's own environment, as its session set it),
    when it is an IP address. For a process writing the journal itself; the server derives a client's origin
    with session_origin instead, never from an environment."""
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
    """The SSH client address of the session process ``pid`` runs in, from the connection of the root sshd that
    serves it; None outside an SSH session or where the server cannot see it."""
    for _ in range(MAX_DEPTH):
        parent = _parent(proc, pid)
        if parent is None or parent < 1:
            return None
        if _is_root_sshd(proc, parent):
            return _remote_address(proc, parent)
        pid = parent
    return None


def _is_root_sshd(proc: Path, pid: int) -> bool:
    try:
        status = (proc / str(pid) / "status").read_text(errors="replace")
        uid = int(status.split("\nUid:", 1)[1].split()[0])
        exe = os.readlink(proc / str(pid) / "exe")
        st = os.stat(exe)
    except (OSError, IndexError, ValueError):
        return False
    return uid == 0 and os.path.basename(exe) in SSHD and st.st_uid == 0 and not st.st_mode & 0o022


def _remote_address(proc: Path, pid: int) -> str | None:
    """The remote address of an established TCP connection process pid holds."""
    inodes = set()
    try:
        for fd in os.listdir(proc / str(pid) / "fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(proc / str(pid) / "fd" / fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    except OSError:
        return None
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[9] in inodes and f[3] == "01":  # 01: ESTABLISHED
                return _address(f[2].split(":")[0])
    return None


def _address(hexaddr: str) -> str | None:
    """/proc/net/tcp's address: 32-bit words in host (little-endian) order."""
    try:
        raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


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

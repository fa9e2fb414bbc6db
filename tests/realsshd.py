"""A fleet of real OpenSSH servers on 127.0.0.1: the test bed for behaviour that depends on the host.

Each host is one ``sshd -D -e -f CONFIG`` process on its own free port, with its own host key, and its own system
user (``crh-<hash>-NAME``, created with useradd, removed at stop) whose home directory is DIR/hosts/NAME, seeded as
the simulated fleet seeds it (REVISION reads r2306). While the fleet runs, DIR/hosts is a link to a directory in
/tmp outside pytest's temp root (which any pytest starting makes 0700 again); stop() moves the homes back there. The hash is taken from the fleet directory and this process's
id, so two pytest runs at the same time never share a user, a port or a file. Needs root (useradd, sshd).

RealFleet offers the surface of controlroom.demo.fleet.Fleet that tests use: ``dir``, ``config_path`` (written by
the same writer as the simulated fleet's, with each host's user in [inventory.host]), ``known_hosts``, ``hosts``
(``name``, ``root``, ``port``, ``user``), ``by_name`` and ``stop()``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from controlroom.demo.fleet import LIVE_REVISION, STAGED_REVISION, _seed_host
from controlroom.demo.fleetconfig import write_fleet_config, write_ssh_config
from controlroom.demo.repo import make_demo_repo

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0


class RealSSHDUnavailable(RuntimeError):
    """sshd is not installed, or this process cannot create users (not root)."""


def unavailable_reason() -> str | None:
    """Why real sshd hosts cannot be started here, or None when they can."""
    if not os.path.isfile(SSHD):
        return f"{SSHD} is missing (install Debian's openssh-server; .ci/run does)"
    if os.geteuid() != 0:
        return "real sshd hosts need root (one system user per host)"
    for tool in ("useradd", "userdel"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


@dataclass
class RealHost:
    name: str
    root: Path  # the host user's home directory: where its commands run
    user: str
    port: int = 0
    uid: int = -1
    gid: int = -1
    proc: subprocess.Popen | None = None
    log: Path | None = None


def _pids_of_uid(uid: int) -> list[int]:
    """The live processes of uid. Zombies are left out: they are dead already, and where the init of a container
    reaps orphans late, waiting for them to go took 5 s a host."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                state = ""
                for line in f:
                    if line.startswith("State:"):
                        state = line.split()[1]
                    elif line.startswith("Uid:"):
                        if int(line.split()[1]) == uid and state not in ("Z", "X"):
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def _listening(pid: int, port: int) -> bool:
    """True once process ``pid`` itself listens on 127.0.0.1:port (not some other process that took the port)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        parts = row.split()
        if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port and parts[9] in inodes:
            return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _account(*args: str) -> subprocess.CompletedProcess:
    """useradd/userdel, retried while another process (a parallel test run) holds the passwd lock."""
    deadline = time.monotonic() + 30
    while True:
        res = subprocess.run(args, capture_output=True, text=True, timeout=30)
        # exit 10 (useradd) / 10 (userdel): cannot lock the password file; someone else is changing it
        if res.returncode != 10 or time.monotonic() > deadline:
            return res
        time.sleep(0.05)


class RealFleet:
    """Start with ``start()`` (returns self); ``stop()`` ends every sshd and host process and removes the users."""

    def __init__(self, directory: str | os.PathLike[str], hosts: int = 3, prefix: str = "web") -> None:
        self.dir = Path(directory).resolve()
        self.prefix = prefix
        self.width = max(3, len(str(hosts)))
        tag = hashlib.sha1(f"{os.getpid()}:{self.dir}".encode()).hexdigest()[:6]
        names = [f"{prefix}{i:0{self.width}d}" for i in range(1, hosts + 1)]
        # the homes live outside pytest's temp root, reached through the link DIR/hosts while the fleet runs:
        # every pytest that starts makes that root 0700 again, which cut running hosts off their homes
        self._homes = Path(tempfile.gettempdir()).resolve() / f"controlroom-sshd-{tag}"
        self.hosts = [RealHost(n, self._homes / n, f"crh-{tag}-{n}"[:32]) for n in names]
        self.by_name = {h.name: h for h in self.hosts}
        self._users: list[RealHost] = []

    @property
    def config_path(self) -> Path:
        return self.dir / "controlroom.toml"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    # ------------------------------------------------------------------------------------- start
    def start(self) -> RealFleet:
        why = unavailable_reason()
        if why:
            raise RealSSHDUnavailable(why)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        (self.dir / "sshd").mkdir(parents=True, exist_ok=True)
        self._homes.mkdir(mode=0o711)
        os.chmod(self._homes, 0o711)  # the host users walk through it to their homes (whatever the umask)
        (self.dir / "hosts").symlink_to(self._homes, target_is_directory=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="controlroom-test")
        client_key.write_private_key(str(self.dir / "client_key"))
        os.chmod(self.dir / "client_key", 0o600)
        client_key.write_public_key(str(self.dir / "client_key.pub"))
        authorized = client_key.export_public_key()
        make_demo_repo(self.dir / "repo", live=LIVE_REVISION, staged=STAGED_REVISION)
        known_lines = []
        for h in self.hosts:
            self._add_user(h)
            _seed_host(h.root)
            ssh_dir = h.root / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            (ssh_dir / "authorized_keys").write_bytes(authorized)
            os.chmod(ssh_dir / "authorized_keys", 0o600)
            for path in [h.root, *h.root.rglob("*")]:
                os.lchown(path, h.uid, h.gid)
            os.chmod(h.root, 0o755)  # StrictModes: neither the home nor ~/.ssh group/world writable
            key = asyncssh.generate_private_key("ssh-ed25519")
            key_path = self.dir / "sshd" / f"{h.name}_host_key"
            key.write_private_key(str(key_path))
            os.chmod(key_path, 0o600)
            self._launch(h, key_path)
            pub = key.export_public_key().decode().strip()
            known_lines.append(f"[{h.name}]:{h.port},[127.0.0.1]:{h.port} {pub}")
        self.known_hosts.write_text("\n".join(known_lines) + "\n")
        hosts = [(h.name, h.port, h.user) for h in self.hosts]
        write_ssh_config(self.dir, hosts)
        write_fleet_config(self.config_path, hosts, self.prefix, self.width)

    def _add_user(self, h: RealHost) -> None:
        h.root.mkdir(parents=True, exist_ok=True)
        # '*' as the password: no password login, but not a locked account ('!'), which sshd refuses even for keys
        res = _account("useradd", "--no-create-home", "--home-dir", str(h.root), "--shell", "/bin/sh",
                       "--password", "*", "--user-group", h.user)
        if res.returncode != 0:
            raise RealSSHDUnavailable(f"useradd {h.user} failed: {res.stderr.strip()}")
        self._users.append(h)
        entry = pwd.getpwnam(h.user)
        h.uid, h.gid = entry.pw_uid, entry.pw_gid

    def _launch(self, h: RealHost, key_path: Path) -> None:
        config = self.dir / "sshd" / f"{h.name}.conf"
        h.log = self.dir / "sshd" / f"{h.name}.log"
        for _attempt in range(5):
            h.port = _free_port()
            config.write_text(
                f"Port {h.port}\n"
                "ListenAddress 127.0.0.1\n"
                f"HostKey {key_path}\n"
                "PidFile none\n"
                f"AllowUsers {h.user}\n"
                "AuthorizedKeysFile .ssh/authorized_keys\n"
                "PubkeyAuthentication yes\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                "PermitRootLogin no\n"
                "StrictModes yes\n"
                "AllowTcpForwarding yes\n"
                "UseDNS no\n"
                "PrintMotd no\n"
                "PrintLastLog no\n"
                "Subsystem sftp internal-sftp\n"
                f"SetEnv HOSTNAME={h.name}\n"  # as the simulated fleet sets it, so `echo $HOSTNAME` names the host
                "LogLevel INFO\n"
            )
            with open(h.log, "ab") as log:
                h.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            while h.proc.poll() is None and not _listening(h.proc.pid, h.port):
                if time.monotonic() > deadline:
                    raise RealSSHDUnavailable(f"sshd for {h.name} did not listen on {h.port}: {self._tail(h)}")
                time.sleep(0.01)
            if h.proc.poll() is None:
                return
            if "Address already in use" not in self._tail(h):  # the free port was taken meanwhile: try another
                raise RealSSHDUnavailable(f"sshd for {h.name} exited {h.proc.returncode}: {self._tail(h)}")
        raise RealSSHDUnavailable(f"sshd for {h.name} found no free port: {self._tail(h)}")

    @staticmethod
    def _tail(h: RealHost) -> str:
        try:
            return " | ".join(h.log.read_text(errors="replace").strip().splitlines()[-5:]) if h.log else ""
        except OSError:
            return ""

    def sshd_log(self, name: str) -> str:
        """What that host's sshd wrote (for a failing test's message)."""
        h = self.by_name[name]
        return h.log.read_text(errors="replace") if h.log and h.log.exists() else ""

    # ------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """End every sshd and every process of the host users, then remove the users. Safe to call twice."""
        for h in self.hosts:
            if h.proc is not None and h.proc.poll() is None:
                h.proc.terminate()
        for h in self.hosts:
            if h.proc is not None:
                try:
                    h.proc.wait(5)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait(5)
        for h in self._users:
            deadline = time.monotonic() + 5
            while (pids := _pids_of_uid(h.uid)) and time.monotonic() < deadline:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)
            # a zombie of the user's still counts for userdel ("currently used by process"): only those are left
            if _account("userdel", h.user).returncode == 8:
                _account("userdel", "--force", h.user)
        self._users.clear()
        # the homes go back under DIR/hosts, where the test left its other files (same file system: a rename)
        link = self.dir / "hosts"
        if self._homes.exists() and link.is_symlink():
            link.unlink()
            shutil.move(self._homes, link)

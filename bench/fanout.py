"""Fan-out benchmark: run `true` on every host of one simulated fleet, controlroom against the field.

Run by hand, never by CI; nothing here asserts on a timing. One run starts one fleet (`controlroom fleet`, in its
own process, so the servers do not share an interpreter or a CPU-time count with the clients) and measures each
contender over several rounds, in a rotating order so machine noise spreads over all of them:

  controlroom   cold: a fresh `controlroom run true --config FLEET/controlroom.toml` process (the fleet's config
                      gives each host's address and port in [inventory.host] and names no ssh_config)
                warm: SSHPool.run_many on a pool already connected to every host (what the engine does between steps)
  floor         the same fan-out as a bare asyncssh script, cold (fresh process) and warm (connections reused)
  parallel-ssh  ParallelSSHClient, cold (fresh process) and warm (same client, second run_command)
  ansible raw   `ansible all -m raw -a true -f N`, cold (no ControlMaster) and with ControlPersist masters alive

    /work/venv/bin/python bench/fanout.py                 # 150 hosts, 7 rounds, plain table (~2 minutes)
    /work/venv/bin/python bench/fanout.py --markdown      # also a markdown table for the README

Only 127.0.0.1 traffic. Every subprocess has a timeout, the run has a time budget, and the fleet, the warm workers
and the ssh ControlPersist masters are stopped at the end, also on error or Ctrl+C.
"""

# The cold contenders run this very file as a fresh process (`--worker floor-cold ...`). At module level it imports
# only what a bare script would, so the floor pays for nothing the orchestrator needs.
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402 - beside this file

# ------------------------------------------------------------------------------------------------ workers


def _fleet_ports(fleet_dir: str) -> dict[str, int]:
    import json

    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        return json.load(f)["hosts"]


def _floor_options(fleet_dir: str):
    """What a careful bare asyncssh script gathers once: strict known_hosts, the client key, no ssh_config."""
    import asyncssh

    return asyncssh.SSHClientConnectionOptions(
        known_hosts=asyncssh.read_known_hosts(os.path.join(fleet_dir, "known_hosts")),
        client_keys=asyncssh.load_keypairs([os.path.join(fleet_dir, "client_key")]),
        username="deploy",
        connect_timeout=10,
    )


def worker_floor_cold(fleet_dir: str) -> int:
    import asyncio

    import asyncssh

    ports = _fleet_ports(fleet_dir)

    async def main() -> int:
        options = _floor_options(fleet_dir)

        async def one(port: int) -> bool:
            async with asyncssh.connect("127.0.0.1", port, options=options, config=None) as conn:
                return (await conn.run("true")).exit_status == 0

        ok = await asyncio.gather(*(one(p) for p in ports.values()), return_exceptions=True)
        return sum(r is True for r in ok)

    ok = asyncio.run(main())
    print(f"ok {ok}")
    return 0 if ok == len(ports) else 1


def _pssh_client(fleet_dir: str):
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    ports = list(_fleet_ports(fleet_dir).values())
    key = os.path.join(fleet_dir, "client_key")
    # one address, one port per host: host_config is matched to hosts by position
    config = [HostConfig(port=p, user="deploy", private_key=key) for p in ports]
    return ParallelSSHClient(["127.0.0.1"] * len(ports), host_config=config, pkey=key, num_retries=1,
                             pool_size=len(ports), timeout=30)


def _pssh_run(client) -> int:
    output = client.run_command("true", stop_on_errors=False)
    client.join(output, timeout=60)
    return sum(o.exception is None and o.exit_code == 0 for o in output)


def worker_pssh_cold(fleet_dir: str) -> int:
    ok = _pssh_run(_pssh_client(fleet_dir))
    print(f"ok {ok}")
    return 0 if ok == len(_fleet_ports(fleet_dir)) else 1


def _answer(took: float, cpu: float, ok: int, expected: int, extra: str) -> None:
    print(f"t {took:.6f} {cpu:.6f} {ok} {expected} {extra}", flush=True)


def worker_pssh_warm(fleet_dir: str) -> int:
    import time

    client = _pssh_client(fleet_dir)
    expected = len(_fleet_ports(fleet_dir))
    print(f"ready {_pssh_run(client)}", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        c0, t0 = time.process_time(), time.perf_counter()
        ok = _pssh_run(client)
        _answer(time.perf_counter() - t0, time.process_time() - c0, ok, expected, "same-client")
    return 0


async def _serve_warm(first_ok: int, expected: int, fan_out) -> None:
    """After `ready`, each `go` from the orchestrator runs one timed fan-out; `quit` or EOF ends.

    stdin is read in a thread so the event loop keeps running between rounds: keepalives and late packets are
    handled as they come, as in a long-lived engine, instead of piling up into the next timed round."""
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    print(f"ready {first_ok}", flush=True)
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
        c0, t0 = time.process_time(), time.perf_counter()
        ok, extra = await fan_out()
        _answer(time.perf_counter() - t0, time.process_time() - c0, ok, expected, extra)


def worker_controlroom_warm(fleet_dir: str) -> int:
    import asyncio

    from controlroom.config import config
    from controlroom.fleet.ssh import SSHPool, raise_nofile_limit

    cfg = config.load(os.path.join(fleet_dir, "controlroom.toml"))
    names = [h.name for h in cfg.hosts]
    raise_nofile_limit(len(names))

    async def main() -> None:
        async with SSHPool(cfg.ssh, cfg.hosts) as pool:

            async def fan_out() -> tuple[int, str]:
                results = await pool.run_many(names, "true")
                return sum(r.ok for r in results), f"handshakes={pool.handshakes}"

            first, _ = await fan_out()
            await _serve_warm(first, len(names), fan_out)

    asyncio.run(main())
    return 0


def worker_floor_warm(fleet_dir: str) -> int:
    import asyncio

    import asyncssh

    options = _floor_options(fleet_dir)
    ports = list(_fleet_ports(fleet_dir).values())

    async def main() -> None:
        conns = await asyncio.gather(*(asyncssh.connect("127.0.0.1", p, options=options, config=None)
                                       for p in ports), return_exceptions=True)
        conns = [c for c in conns if not isinstance(c, BaseException)]

        async def fan_out() -> tuple[int, str]:
            done = await asyncio.gather(*(c.run("true") for c in conns), return_exceptions=True)
            return sum(getattr(r, "exit_status", None) == 0 for r in done), f"connections={len(conns)}"

        try:
            first, _ = await fan_out()
            await _serve_warm(first, len(ports), fan_out)
        finally:
            for c in conns:
                c.close()
            await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    asyncio.run(main())
    return 0


WORKERS = {
    "floor-cold": worker_floor_cold,
    "pssh-cold": worker_pssh_cold,
    "controlroom-warm": worker_controlroom_warm,
    "floor-warm": worker_floor_warm,
    "pssh-warm": worker_pssh_warm,
}

# ------------------------------------------------------------------------------------------------ orchestrator

NOTES = {
    "controlroom cold": "`controlroom run true`: startup, config, handshakes, commands",
    "controlroom warm": "SSHPool.run_many on a connected pool",
    "floor cold": "bare asyncssh script, fresh process",
    "floor warm": "bare asyncssh, connections reused",
    "python + import asyncssh": "reference: interpreter start + import, no SSH",
    "parallel-ssh cold": "libssh2; does NOT check host keys",
    "parallel-ssh warm": "same client, second run_command; no host-key check",
    "ansible raw cold": "OpenSSH, strict known_hosts, ControlMaster=no",
    "ansible raw ControlPersist": "fresh ansible process; OpenSSH masters from the last run",
}

LEGEND = """\
cold = a fresh process per run, wall time from spawn to exit (interpreter start included); warm = connections
already open, only the fan-out is timed (ansible ControlPersist: open OpenSSH masters, but a fresh ansible process).
vs floor = median / floor median of the same kind. client CPU = user+sys of the client's process tree (cold:
RUSAGE_CHILDREN; warm: process_time in the worker); the fleet's CPU is not in it. Host keys: controlroom, the floor
and Ansible check them strictly against the fleet's known_hosts; parallel-ssh (libssh2) has no known_hosts check,
so it skips that work. Neither the floor nor controlroom reads an ssh_config: the floor reads known_hosts and the
client key once, and controlroom takes each host's address and port from the [inventory.host] table of the
controlroom.toml the fleet writes (a config that names an ssh_config, or a ~/.ssh/config, is resolved once per host
per pool)."""


class Contender:
    def __init__(self, name: str, kind: str, run) -> None:
        self.name, self.kind, self.run = name, kind, run


def main(argv: list[str] | None = None) -> int:
    return Bench(_common.bench_args(__doc__, 7, 240, argv)).run()


class Bench(_common.FleetBench):
    COLD_TIMEOUT = 90.0
    ANSIBLE_TIMEOUT = 180.0
    WARM_TIMEOUT = 60.0

    def __init__(self, args) -> None:
        super().__init__(args)
        self.workers: dict[str, _common.Worker] = {}
        self.contenders: list[Contender] = []
        self.samples: dict[str, list[tuple[float, float | None]]] = {}
        self.recording = True
        self.ansible_version = ""

    # -------------------------------------------------------------------------------------- lifecycle
    def work(self) -> None:
        self.plan()
        self.measure()

    def cleanup(self) -> None:
        for w in self.workers.values():
            w.stop()
        self.stop_ssh_masters()

    # -------------------------------------------------------------------------------------- contenders
    def plan(self) -> None:
        """Decide who runs; start the warm workers (each connects and does its first, untimed fan-out)."""
        import importlib.util
        import shutil

        d = str(self.fleet_dir)
        me = [sys.executable, os.path.abspath(__file__), "--worker"]
        cr_run = self.c.controlroom_cmd() + ["run", "true", "--config", str(self.fleet_dir / "controlroom.toml")]
        self.add_cold("controlroom cold", cr_run, self.controlroom_ok)
        self.notes += self.c.ssh_config_notes(self.fleet_dir / "controlroom.toml")
        self.add_cold("floor cold", me + ["floor-cold", d], self.worker_ok)
        self.add_cold("python + import asyncssh", [sys.executable, "-c", "import asyncssh"], None)
        self.add_warm("controlroom warm", me + ["controlroom-warm", d])
        self.add_warm("floor warm", me + ["floor-warm", d])
        if importlib.util.find_spec("pssh") is not None:
            self.add_cold("parallel-ssh cold", me + ["pssh-cold", d], self.worker_ok)
            self.add_warm("parallel-ssh warm", me + ["pssh-warm", d])
        else:
            self.notes.append("parallel-ssh: not installed (pip install parallel-ssh); skipped")
        ansible = self.bin / "ansible"
        ansible = str(ansible) if ansible.exists() else shutil.which("ansible")
        if self.args.no_ansible:
            self.notes.append("ansible: skipped (--no-ansible)")
        elif not ansible:
            self.notes.append("ansible: not installed (pip install ansible-core); skipped")
        elif not shutil.which("ssh"):
            self.notes.append("ansible: no OpenSSH client (ssh) on PATH; skipped")
        else:
            cmd = self.setup_ansible(ansible)
            self.add_cold("ansible raw cold", cmd, self.ansible_ok, env=self.ansible_env(persist=False),
                          timeout=self.ANSIBLE_TIMEOUT)
            self.add_cold("ansible raw ControlPersist", cmd, self.ansible_ok, env=self.ansible_env(persist=True),
                          timeout=self.ANSIBLE_TIMEOUT, kind="warm")

    def add_cold(self, name: str, cmd: list[str], check, *, env: dict | None = None,
                 timeout: float | None = None, kind: str = "cold") -> None:
        self.contenders.append(Contender(name, kind, lambda: self.cold(name, cmd, check, env, timeout)))

    def add_warm(self, name: str, cmd: list[str]) -> None:
        w = self.c.Worker(name, cmd, self.WARM_TIMEOUT)
        err = w.start()
        if err:
            self.fail(name, err)
        self.workers[name] = w
        self.contenders.append(Contender(name, "warm", lambda: self.warm_round(name)))

    def measure(self) -> None:
        import time

        started = time.monotonic()
        # one untimed round first: page cache, .pyc files, the ControlPersist masters, each host's first /bin/sh
        self.recording = False
        for c in self.contenders:
            c.run()
        self.recording = True
        for r in range(self.args.rounds):
            if time.monotonic() - started > self.args.budget:
                self.notes.append(f"time budget of {self.args.budget:g} s spent: stopped after {r} rounds")
                break
            k = r % len(self.contenders)
            for c in self.contenders[k:] + self.contenders[:k]:  # every contender takes every slot in turn
                c.run()
                # let the fleet finish closing the previous client's connections; Ansible's 150 forks and ssh
                # processes take longer to wind down, and the next contender should not pay for that
                time.sleep(2.0 if c.name.startswith("ansible") else 0.3)
            print(f"bench: round {r + 1}/{self.args.rounds} done ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    def cold(self, name: str, cmd: list[str], check, env: dict | None, timeout: float | None) -> None:
        timeout = timeout or self.COLD_TIMEOUT
        done, took, cpu = self.c.timed_run(cmd, timeout=timeout, env=env)
        if done is None:
            self.fail(name, f"timed out after {timeout:g} s")
            return
        problem = check(done) if check else (None if done.returncode == 0 else f"exit {done.returncode}")
        if problem:
            self.fail(name, problem)
        elif self.recording:
            self.samples.setdefault(name, []).append((took, cpu))

    def warm_round(self, name: str) -> None:
        w = self.workers[name]
        if not w.alive:
            return
        line, err = w.go()
        if err:
            self.fail(name, err)
            return
        _, took, cpu, ok, expected, extra = line.split(maxsplit=5)
        if int(ok) != int(expected):
            self.fail(name, f"{ok}/{expected} hosts ok")
        elif name == "controlroom warm" and extra != f"handshakes={self.n}":
            self.fail(name, f"the pool reconnected during a warm round ({extra})")
        elif self.recording:
            self.samples.setdefault(name, []).append((float(took), float(cpu)))

    def fail(self, name: str, why: str) -> None:
        self.failures.setdefault(name, []).append(why)

    def controlroom_ok(self, done) -> str | None:
        last = done.stdout.strip().rsplit("\n", 1)[-1] if done.stdout.strip() else ""
        if done.returncode != 0 or not last.startswith(f"{self.n} hosts: {self.n} ok"):
            return f"exit {done.returncode}: {last or done.stderr.strip()[-200:]}"
        return None

    def worker_ok(self, done) -> str | None:
        if done.returncode != 0 or done.stdout.strip() != f"ok {self.n}":
            return f"exit {done.returncode}: {(done.stdout.strip() + ' ' + done.stderr.strip())[-300:]}"
        return None

    # -------------------------------------------------------------------------------------- ansible
    def setup_ansible(self, ansible: str) -> list[str]:
        import subprocess

        d = self.fleet_dir
        inv = self.tmp / "inventory.ini"
        lines = ["[fleet]"] + [f"{name} ansible_host=127.0.0.1 ansible_port={port}"
                               for name, port in self.ports.items()]
        lines += [
            "", "[fleet:vars]", "ansible_user=deploy", f"ansible_ssh_private_key_file={d / 'client_key'}",
            f"ansible_ssh_common_args='-o UserKnownHostsFile={d / 'known_hosts'} -o StrictHostKeyChecking=yes'",
        ]
        inv.write_text("\n".join(lines) + "\n")
        for sub in ("home", "tmp", "cp"):
            (self.tmp / "ansible" / sub).mkdir(parents=True, exist_ok=True)
        (self.tmp / "ansible" / "ansible.cfg").write_text("[defaults]\n")  # no stray ./ansible.cfg or ~/.ansible.cfg
        try:
            v = subprocess.run([ansible, "--version"], capture_output=True, text=True, timeout=60)
            self.ansible_version = v.stdout.split("\n", 1)[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            self.ansible_version = "ansible (version unknown)"
        return [ansible, "all", "-i", str(inv), "-m", "raw", "-a", "true", "-f", str(self.n)]

    def ansible_env(self, *, persist: bool) -> dict:
        a = self.tmp / "ansible"
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(a / "ansible.cfg"),
            ANSIBLE_HOME=str(a / "home"),
            ANSIBLE_LOCAL_TEMP=str(a / "tmp"),
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_TIMEOUT="30",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(a / "cp"),
            # cold: every run does N full OpenSSH handshakes, like `controlroom run`
            # persist: Ansible's default ControlMaster=auto, so masters from the previous run are reused
            ANSIBLE_SSH_ARGS=("-o ControlMaster=auto -o ControlPersist=600s" if persist
                              else "-o ControlMaster=no -o ControlPath=none"),
        )
        return env

    def ansible_ok(self, done) -> str | None:
        import re

        ok = len(re.findall(r"\| (?:CHANGED|SUCCESS) \| rc=0", done.stdout))
        if done.returncode != 0 or ok != self.n:
            bad = [ln for ln in done.stdout.splitlines() if "UNREACHABLE" in ln or "FAILED" in ln][:2]
            return f"exit {done.returncode}, {ok}/{self.n} ok: {' | '.join(bad) or done.stderr.strip()[-300:]}"
        return None

    def stop_ssh_masters(self) -> None:
        import subprocess

        cp = self.tmp / "ansible" / "cp"
        if not cp.is_dir():
            return
        for sock in cp.iterdir():  # only the masters this run's ansible started, each by its own socket
            try:
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-master"],
                               capture_output=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    # -------------------------------------------------------------------------------------- report
    def versions(self) -> str:
        return self.c.versions(("controlroom", "parallel-ssh", "ssh2-python"), self.ansible_version)

    def stats(self, name: str) -> tuple[float, float, float | None] | None:
        s = self.samples.get(name)
        if not s:
            return None
        walls = [w for w, _ in s]
        cpus = [c for _, c in s if c is not None]
        return self.c.median(walls), min(walls), (self.c.median(cpus) if cpus else None)

    def rows(self) -> list[tuple[str, ...]]:
        floor = {"cold": self.stats("floor cold"), "warm": self.stats("floor warm")}
        rows = []
        for c in self.contenders:
            st = self.stats(c.name)
            if st is None:
                why = "; ".join(dict.fromkeys(self.failures.get(c.name, ["not measured"])))
                rows.append((c.name, c.kind, "-", "-", "-", "-", "0", f"failed: {why[:120]}"))
                continue
            med, lo, cpu = st
            fl = floor[c.kind]
            ratio = f"{med / fl[0]:.2f}x" if fl and not c.name.startswith("python") else "-"
            bad = len(self.failures.get(c.name, []))
            runs = f"{len(self.samples[c.name])}" + (f" (+{bad} failed)" if bad else "")
            rows.append((c.name, c.kind, f"{med:.3f}", f"{lo:.3f}", "-" if cpu is None else f"{cpu:.3f}",
                         ratio, runs, NOTES.get(c.name, "")))
        return rows

    def verdicts(self) -> list[str]:
        """Each target as `B / A` on the median wall time (what the target means), with the same ratio on the best
        run and on client CPU alongside: on a busy machine CPU time moves far less than wall time."""

        def ratio(num: str, den: str) -> tuple[float, str] | None:
            a, b = self.stats(num), self.stats(den)
            if not a or not b:
                return None
            cpu = f", CPU {a[2] / b[2]:.2f}x" if a[2] and b[2] else ""
            return a[0] / b[0], f"median {a[0] / b[0]:.2f}x (best {a[1] / b[1]:.2f}x{cpu})"

        out = []
        for kind in ("cold", "warm"):
            r = ratio(f"controlroom {kind}", f"floor {kind}")
            if r:
                out.append(f"controlroom {kind} / floor {kind}: {r[1]}; target <= 1.30x: "
                           f"{'MET' if r[0] <= 1.3 else 'MISSED'}")
        for kind in ("cold", "warm"):
            r = ratio(f"parallel-ssh {kind}", f"controlroom {kind}")
            if r:
                out.append(f"parallel-ssh {kind} / controlroom {kind}: {r[1]}; target > 1 (controlroom faster): "
                           f"{'MET' if r[0] > 1 else 'MISSED'}")
        for an_name, cr_name in (("ansible raw cold", "controlroom cold"),
                                 ("ansible raw ControlPersist", "controlroom warm")):
            r = ratio(an_name, cr_name)
            if r:
                out.append(f"{an_name} / {cr_name}: {r[1]}; target >= 8x: {'MET' if r[0] >= 8 else 'MISSED'}")
        r = ratio("ansible raw cold", "floor cold")
        if r:
            out.append(f"for scale, ansible raw cold / floor cold: {r[1]} (the most an asyncssh client reaches here)")
        return out

    def report(self) -> None:
        head = ("contender", "kind", "median s", "min s", "client CPU s", "vs floor", "runs", "notes")
        rows = self.rows()
        machine = self.c.machine_line()
        print()
        print(f"fan-out of `true` to {self.n} simulated hosts on 127.0.0.1 (fleet in its own process), "
              f"{self.args.rounds} rounds, rotating order")
        print(f"machine: {machine}")
        print(f"also: {self.versions()}")
        print(f"load average (1 min) before {self.load_before}, after {self.c.loadavg()} (Ansible's forks count "
              "too): other work on the machine shows up as noise")
        if rows:
            widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
            for r in [head, *rows]:
                cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))]
                print("  ".join(cells) + "  " + r[-1])
        print()
        for v in self.verdicts():
            print(v)
        self.print_notes()
        print(LEGEND)
        if self.args.markdown and rows:
            print("\n----- markdown -----\n")
            print(f"`true` on {self.n} simulated hosts (127.0.0.1), median and best of {self.args.rounds} rounds "
                  f"in rotating order. {machine}.\n")
            print("| " + " | ".join(head) + " |")
            print("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 3) + ["---"]) + "|")
            for r in rows:
                print("| " + " | ".join(r) + " |")
            print()
            for v in self.verdicts():
                print(f"- {v}")
            print()
            print(" ".join(LEGEND.split()))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker" and sys.argv[2] in WORKERS:
        sys.exit(WORKERS[sys.argv[2]](sys.argv[3]))
    sys.exit(main())

"""Rollout benchmark: ship a revision to one simulated fleet in three phases, controlroom against the field.

Run by hand, never by CI; nothing here asserts on a timing. One run starts one fleet (`controlroom fleet`, in its
own process, so the servers do not share an interpreter or a CPU-time count with the clients). The phases are those
of the issue: 2 hosts, 10% of the fleet, the rest; each host gets the same two trivial steps (make the release
directory, switch `current` and REVISION to it). Each round ships a new revision, so every round changes every host.

  controlroom        `controlroom deploy --yes --revision R` as a fresh process, with a fresh state dir (journal),
                     on the fleet's controlroom.toml with its [deploy] (no health check) and [[phase]] parts replaced:
                     cold, its server starts with it (two interpreters) and opens the fleet's connections as
                     soon as it listens (`serve --warm`)
  ..., not warm      the same with a client whose spawn leaves --warm out (as before it existed)
  ..., server up     the same through one server kept up over the rounds (warm)
  python + import    the start-up of each interpreter: asyncssh alone (what the floor pays), the deploy client's
                     and the server's imports
  floor              a bare asyncssh script as a fresh process: the same three batches, two commands per host
  ..., cipher order  the same floor asking for the ciphers in controlroom's order (AES-GCM first; asyncssh's own
                     order puts chacha20-poly1305 first): what that choice alone is worth
  ansible-playbook   `serial: [2, "10%", "100%"]`, two `raw` tasks, forks N, strict host keys (skipped if absent)

Then, in this process, the engine's own cost: process_time() of full in-process rollouts divided by their
HostStateChanged events, minus the CPU of the floor doing the same SSH work (the commands the engine sends), and a
cProfile of one rollout for the share spent in engine/rollout.py, journal/journal.py and core/events.py (and what
they call but the SSH pool). The subtraction also counts what SSHPool adds over bare asyncssh (streamed lines, semaphores); the
cProfile share sees only the main thread (asyncssh builds each connection's options in a worker thread).

    /work/venv/bin/python bench/rollout.py                # 150 hosts, 5 rounds (~3 minutes with Ansible)
    /work/venv/bin/python bench/rollout.py --markdown     # also markdown tables for the README

Only 127.0.0.1 traffic. Every subprocess has a timeout, the run has a time budget, and the fleet and the OpenSSH
ControlPersist masters Ansible leaves behind are stopped at the end, also on error or Ctrl+C.
"""

# The floor runs this very file as a fresh process (`--worker floor ...`). At module level it imports only what a
# bare script would, so the floor pays for nothing the orchestrator needs.
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402 - beside this file

# ------------------------------------------------------------------------------------------------ the floor


def _floor_options(fleet_dir: str):
    """What a careful bare asyncssh script gathers once: strict known_hosts, the client key, no ssh_config."""
    import asyncssh

    # BENCH_FLOOR_CIPHERS (comma-separated): the ciphers in the order controlroom asks for them (fleet/ssh.py
    # CIPHERS), for the row that shows what that choice alone is worth; otherwise asyncssh's default order
    ciphers = os.environ.get("BENCH_FLOOR_CIPHERS")
    return asyncssh.SSHClientConnectionOptions(
        known_hosts=asyncssh.read_known_hosts(os.path.join(fleet_dir, "known_hosts")),
        client_keys=asyncssh.load_keypairs([os.path.join(fleet_dir, "client_key")]),
        username="deploy",
        connect_timeout=10,
        **({"encryption_algs": ciphers.split(",")} if ciphers else {}),
    )


async def floor_rollout(fleet_dir: str, batches: list[int], commands: list[str]) -> int:
    """Batch after batch, every host of a batch at once: connect, run the commands in order. Returns hosts ok."""
    import asyncio
    import json

    import asyncssh

    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        ports = list(json.load(f)["hosts"].values())
    options = _floor_options(fleet_dir)

    async def one(port: int) -> bool:
        async with asyncssh.connect("127.0.0.1", port, options=options, config=None) as conn:
            for cmd in commands:
                if (await conn.run(cmd)).exit_status != 0:
                    return False
            return True

    ok, start = 0, 0
    for size in batches:
        results = await asyncio.gather(*(one(p) for p in ports[start : start + size]), return_exceptions=True)
        ok += sum(r is True for r in results)
        start += size
    return ok


def worker_floor(fleet_dir: str, batches: str, first: str, *commands: str) -> int:
    """The floor as a fresh process; ``first``, unless empty, runs on the first host before the batches."""
    import asyncio

    sizes = [int(b) for b in batches.split(",")]

    async def main() -> int:
        if first and await floor_rollout(fleet_dir, [1], [first]) != 1:
            return 0
        return await floor_rollout(fleet_dir, sizes, list(commands))

    ok = asyncio.run(main())
    print(f"ok {ok}")
    return 0 if ok == sum(sizes) else 1


# ------------------------------------------------------------------------------------------------ the bench

def phases() -> str:
    """The phases of the issue, the demo fleet's own: a canary of 2 (its gate answered by --yes), 10%, the rest.

    Imported here, not at the top: the floor's worker processes start cold and must not pay for controlroom."""
    from controlroom.demo.fleet import demo_phases

    return demo_phases(150)

# what `controlroom deploy` and `controlroom serve` import before they begin their work: the command line parsed
# (build_parser), then what cli/main.py dispatches to (the client up to its server's spawn, cli/start.py with its
# peek at the config: the config module, the journal's check, the session and asyncio come while the server
# starts; the server as it listens)
CLIENT_IMPORTS = (
    "from controlroom.cli.main import build_parser; build_parser().parse_args(['deploy']); "
    "import controlroom.cli.start, controlroom.config.locate, controlroom.server.starter"
)
SERVER_IMPORTS = (
    "from controlroom.cli.main import build_parser; build_parser().parse_args(['serve']); "
    "import controlroom.cli.server, controlroom.server.server, controlroom.fleet.ssh, controlroom.engine.flagpush, "
    "controlroom.server.notify"
)

# the cold deploy as it was before `serve --warm`: the same client, whose spawn of its server leaves --warm out (the
# server opens each host's connection when the deploy first reaches it), to show what the warm connects take off
NOT_WARM = (
    "import sys; import controlroom.server.starter as c; spawn = c.spawn_server; "
    "c.spawn_server = lambda config, state, warm=False: spawn(config, state); "
    "from controlroom.cli.main import main; sys.exit(main(sys.argv[1:]))"
)

LEGEND = """\
Wall time from spawn to exit of a fresh process (interpreter start included), median and best of the rounds;
client CPU = user+sys of that process tree (RUSAGE_CHILDREN; Ansible's daemonised ControlPersist masters are not in
it); the fleet's CPU is in no row. controlroom sends the 2 steps per host, each under the deploy's lease on the host
and wrapped so the host writes a step receipt (what a resume after a crash reads) and skips a step it already did,
the first also reporting the host's live revision (what a rollback goes back to), the last giving the lease back
(the canary's hosts keep it to the end: one more command each), plus one command to the first host for the fleet's
live revision; the floor and Ansible send only
the 2 steps; "floor, controlroom's commands" sends what controlroom sends. Host keys: all check them strictly against
the fleet's known_hosts. Each host's address and port come from the config's [inventory.host] table (controlroom),
the fleet's fleet.json (the floor) or the inventory file (Ansible): none reads an ssh_config. Ansible uses its
default ssh arguments (ControlMaster=auto, ControlPersist=60s) with a fresh ControlPath directory per round, so
every round starts cold like the others."""


def main(argv: list[str] | None = None) -> int:
    return Bench(_common.bench_args(__doc__, 5, 600, argv, min_hosts=4)).run()


class Contender:
    def __init__(self, name: str, run, check) -> None:
        self.name, self.run, self.check = name, run, check


class Bench(_common.FleetBench):
    TIMEOUT = 120.0
    ANSIBLE_TIMEOUT = 300.0
    PREFIX = "crroll-"

    def __init__(self, args) -> None:
        super().__init__(args)
        self.contenders: list[Contender] = []
        self.configs: list = []  # the configs of controlroom rounds whose servers are still to stop
        self.samples: dict[str, list[tuple[float, float | None]]] = {}
        self.cpu: dict[str, str] = {}
        self.ansible_version = ""
        self.serial = 0  # each run ships a new revision

    # -------------------------------------------------------------------------------------- lifecycle
    def work(self) -> None:
        self.compile_bytecode()
        self.plan()
        self.measure()
        self.measure_cpu()

    def cleanup(self) -> None:
        self.stop_ssh_masters()
        if getattr(self, "warm_config", None):
            self.stop_server(self.warm_config)

    def compile_bytecode(self) -> None:
        """controlroom's bytecode, written once before the rounds, as an install leaves it (pip compiles what it
        installs; an editable checkout writes its __pycache__ at the first import). Where PYTHONDONTWRITEBYTECODE
        is set, nothing else would write it, and every interpreter a round starts would compile controlroom's
        source again: ~65 ms of CPU for the deploy client, ~100 ms for its server, on this 2-CPU machine."""
        import compileall

        import controlroom

        compileall.compile_dir(os.path.dirname(controlroom.__file__), quiet=2)
        if sys.flags.dont_write_bytecode:
            self.notes.append("PYTHONDONTWRITEBYTECODE is set: controlroom's bytecode was compiled before the rounds")

    @staticmethod
    def stop_server(path) -> None:
        import subprocess

        subprocess.run([sys.executable, "-m", "controlroom.cli", "server", "stop", "--force", "--config", str(path)],
                       capture_output=True, timeout=60)

    # -------------------------------------------------------------------------------------- what runs
    def plan(self) -> None:
        import shutil
        import tomllib

        from controlroom.config import config
        from controlroom.fleet.ssh import render

        base = (self.fleet_dir / "controlroom.toml").read_text()
        data = tomllib.loads(base)
        self.step_templates = list(data["deploy"]["steps"])
        if len(self.step_templates) != 2:
            self.notes.append(f"the fleet's config has {len(self.step_templates)} steps, not 2")
        self.live_command = data["release"]["live_command"]
        self.render = render
        self.toml = self.plan_toml(base, data)
        self.notes += self.c.ssh_config_notes(self.fleet_dir / "controlroom.toml")
        cfg = config.load(self.write_config("plan", self.toml))
        self.batches = [len(ph.hosts) for ph in cfg.phases]
        if [ph.name for ph in cfg.phases] != ["canary", "stage 1", "stage 2"]:
            self.notes.append(f"phases are {[ph.name for ph in cfg.phases]}, not canary / stage 1 / stage 2")

        cr = self.c.controlroom_cmd()
        self.add("controlroom", lambda rev: self.controlroom(cr, self.toml, rev), self.cr_ok)
        me = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "floor",
            str(self.fleet_dir),
            ",".join(map(str, self.batches)),
        ]
        self.add("floor", lambda rev: (me + [""] + self.steps(rev), None, self.TIMEOUT), self.floor_ok)
        from controlroom.fleet.ssh import CIPHERS

        gcm = {**os.environ, "BENCH_FLOOR_CIPHERS": ",".join(CIPHERS)}
        self.add("floor, controlroom's cipher order", lambda rev: (me + [""] + self.steps(rev), gcm, self.TIMEOUT),
                 self.floor_ok)
        self.add(
            "floor, controlroom's commands",
            lambda rev: (me + [self.live_command, *self.same_commands(rev)], None, self.TIMEOUT),
            self.floor_ok,
        )
        ansible = self.bin / "ansible-playbook"
        ansible = str(ansible) if ansible.exists() else shutil.which("ansible-playbook")
        if self.args.no_ansible:
            self.notes.append("ansible: skipped (--no-ansible)")
        elif not ansible:
            self.notes.append("ansible: not installed (pip install ansible-core); skipped")
        elif not shutil.which("ssh"):
            self.notes.append("ansible: no OpenSSH client (ssh) on PATH; skipped")
        else:
            self.setup_ansible(ansible)
            self.add("ansible-playbook", self.ansible, self.ansible_ok)
        self.add(
            "controlroom, its server not warm",
            lambda rev: self.controlroom([sys.executable, "-c", NOT_WARM], self.toml, rev),
            self.cr_ok,
        )
        self.add(
            "controlroom, server up",
            lambda rev: self.controlroom(cr, self.toml, rev, warm=True),
            self.cr_ok,
        )
        self.add(
            "python + import asyncssh",
            lambda rev: ([sys.executable, "-c", "import asyncssh"], None, self.TIMEOUT),
            None,
        )
        # the two interpreters a cold deploy starts, each to the point where it begins its work: what they
        # import is the start-up a deploy pays before the first host is reached (the floor pays only asyncssh)
        self.add(
            "python + import the deploy client",
            lambda rev: ([sys.executable, "-c", CLIENT_IMPORTS], None, self.TIMEOUT),
            None,
        )
        self.add(
            "python + import the server",
            lambda rev: ([sys.executable, "-c", SERVER_IMPORTS], None, self.TIMEOUT),
            None,
        )

    @staticmethod
    def plan_toml(base: str, data: dict) -> str:
        """The fleet's controlroom.toml without its [deploy], [[phase]] and [state] parts, then a [deploy] with the
        fleet's steps, rollback and step timeout but no health check (the floor and Ansible have none) and the
        bench's phases(). [state] is added per run by write_config. Everything else ([inventory] with its
        [inventory.host] table of addresses and ports, [release]) stays as the fleet wrote it."""
        import json
        import re
        import tomllib

        header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
        kept, keep = [], True
        for line in base.splitlines():
            m = header.match(line)
            if m:
                keep = m.group(1).split(".")[0].strip().strip("\"'") not in ("deploy", "phase", "state")
            if keep:
                kept.append(line)

        def value(v) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return repr(v)
            if isinstance(v, str):
                return json.dumps(v)  # a JSON string is a TOML basic string (json.dumps never writes \/)
            if isinstance(v, list):
                return "[\n" + "".join(f"    {value(x)},\n" for x in v) + "]"
            raise ValueError(f"cannot write {v!r} in the bench's [deploy]")

        deploy = "".join(f"{k} = {value(v)}\n" for k, v in data["deploy"].items() if k != "health")
        text = "\n".join(kept).rstrip() + f"\n\n[deploy]\n{deploy}{phases()}"
        new = tomllib.loads(text)  # the text surgery kept exactly the fleet's other parts, or say so
        for key in data:
            if key not in ("deploy", "phase", "state") and new.get(key) != data[key]:
                raise RuntimeError(f"building the bench's config changed the fleet's [{key}]")
        if new["deploy"] != {k: v for k, v in data["deploy"].items() if k != "health"}:
            raise RuntimeError("building the bench's config changed the fleet's [deploy] steps")
        return text

    def add(self, name: str, run, check) -> None:
        self.contenders.append(Contender(name, run, check))

    def steps(self, revision: str) -> list[str]:
        return [self.render(s, revision=revision) for s in self.step_templates]

    def same_commands(self, revision: str) -> list[str]:
        """What the engine sends each host: each step under the deploy's lease, skipped when its receipt says it
        is done, leaving a receipt when it succeeds; the first one also reports (and records) the host's live
        revision (see hostrun.HostWork._steps and hostside.step_command)."""
        from controlroom.fleet.hostside import Operation, step_command

        op = Operation("bench" + revision, "bench-floor", "bench")
        steps = self.steps(revision)
        # ... the last one also giving the host's lease back, as the engine does for every host past the canary
        return [step_command(op, k, s, live_command=self.live_command if k == 1 else None, release=k == len(steps))
                for k, s in enumerate(steps, start=1)]

    def write_config(self, tag: str, text: str):
        state = self.tmp / "state" / tag
        path = self.fleet_dir / f"bench-{tag}.toml"
        path.write_text(f'{text}\n[state]\ndir = "{state}"\n')
        return path

    def controlroom(self, cr: list[str], text: str, revision: str, *, warm: bool = False):
        import subprocess

        # untimed: the deploy ships only revisions its repository knows (a tag per round); a cold round has a
        # fresh journal, so its control-room server starts with the deploy (what a first deploy costs); a warm
        # one deploys through the one server that the untimed round started and every round keeps
        subprocess.run(["git", "-C", str(self.fleet_dir / "repo"), "tag", "-f", revision, "refs/heads/staging"],
                       check=True, capture_output=True, timeout=30)
        if warm:
            path = self.warm_config = getattr(self, "warm_config", None) or self.write_config("warm", text)
        else:
            path = self.write_config(revision, text)
            self.configs.append(path)
        return cr + ["deploy", "--yes", "--revision", revision, "--config", str(path)], None, self.TIMEOUT

    # -------------------------------------------------------------------------------------- rounds
    def measure(self) -> None:
        import time

        started = time.monotonic()
        # one untimed round first: page cache, .pyc files, each host's first /bin/sh
        for c in self.contenders:
            self.one(c, record=False)
        for r in range(self.args.rounds):
            if time.monotonic() - started > self.args.budget:
                self.notes.append(f"time budget of {self.args.budget:g} s spent: stopped after {r} rounds")
                break
            k = r % len(self.contenders)
            for c in self.contenders[k:] + self.contenders[:k]:  # every contender takes every slot in turn
                self.one(c, record=True)
                time.sleep(0.3)  # let the fleet finish closing the previous client's connections
            print(
                f"bench: round {r + 1}/{self.args.rounds} done ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    def one(self, c: Contender, *, record: bool) -> None:
        self.serial += 1
        revision = f"b{self.serial}"
        cmd, env, timeout = c.run(revision)
        done, took, cpu = self.c.timed_run(cmd, timeout=timeout, env=env)
        self.after_run(c)
        if done is None:
            self.fail(c.name, f"timed out after {timeout:g} s")
            return
        problem = (
            c.check(done, revision)
            if c.check
            else (None if done.returncode == 0 else f"exit {done.returncode}")
        )
        if problem:
            self.fail(c.name, problem)
        elif record:
            self.samples.setdefault(c.name, []).append((took, cpu))

    def after_run(self, c: Contender) -> None:
        if c.name == "ansible-playbook":
            self.stop_ssh_masters()

    def fail(self, name: str, why: str) -> None:
        self.failures.setdefault(name, []).append(why)

    def hosts_on(self, revision: str) -> int:
        n = 0
        for name in self.ports:
            try:
                n += (self.fleet_dir / "hosts" / name / "REVISION").read_text().strip() == revision
            except OSError:
                pass
        return n

    def cr_ok(self, done, revision: str) -> str | None:
        for path in self.configs:  # untimed: a cold round's server goes, so no idle server holds the fleet
            self.stop_server(path)
        self.configs.clear()
        last = done.stdout.strip().rsplit("\n", 1)[-1] if done.stdout.strip() else ""
        if done.returncode != 0 or not last.startswith(f"DEPLOY OK {revision}: {self.n} of {self.n} hosts"):
            return f"exit {done.returncode}: {last or done.stderr.strip()[-200:]}"
        return self.on_every_host(revision)

    def floor_ok(self, done, revision: str) -> str | None:
        if done.returncode != 0 or done.stdout.strip() != f"ok {self.n}":
            return f"exit {done.returncode}: {(done.stdout.strip() + ' ' + done.stderr.strip())[-300:]}"
        return self.on_every_host(revision)

    def on_every_host(self, revision: str) -> str | None:
        on = self.hosts_on(revision)
        return None if on == self.n else f"only {on} of {self.n} hosts hold {revision}"

    # -------------------------------------------------------------------------------------- ansible
    def setup_ansible(self, ansible: str) -> None:
        import subprocess

        d = self.fleet_dir
        self.ansible_bin = ansible
        self.inventory = self.tmp / "inventory.ini"
        lines = ["[fleet]"] + [
            f"{name} ansible_host=127.0.0.1 ansible_port={port}" for name, port in self.ports.items()
        ]
        lines += [
            "",
            "[fleet:vars]",
            "ansible_user=deploy",
            f"ansible_ssh_private_key_file={d / 'client_key'}",
            f"ansible_ssh_common_args='-o UserKnownHostsFile={d / 'known_hosts'} -o StrictHostKeyChecking=yes'",
        ]
        self.inventory.write_text("\n".join(lines) + "\n")
        for sub in ("home", "tmp"):
            (self.tmp / "ansible" / sub).mkdir(parents=True, exist_ok=True)
        # an empty config of our own: no stray ./ansible.cfg or ~/.ansible.cfg changes what is measured
        (self.tmp / "ansible" / "ansible.cfg").write_text("[defaults]\n")
        try:
            v = subprocess.run([ansible, "--version"], capture_output=True, text=True, timeout=60)
            self.ansible_version = v.stdout.split("\n", 1)[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            self.ansible_version = "ansible (version unknown)"

    def ansible(self, revision: str):
        import json

        one, two = self.steps(revision)
        book = self.tmp / "ansible" / f"{revision}.yml"
        book.write_text(
            "- hosts: fleet\n"
            "  gather_facts: false\n"
            '  serial: [2, "10%", "100%"]\n'
            "  tasks:\n"
            f"    - raw: {json.dumps(one)}\n"
            f"    - raw: {json.dumps(two)}\n"
        )
        a = self.tmp / "ansible"
        cp = a / "cp" / revision  # fresh masters each round: cold, like a fresh controlroom process
        cp.mkdir(parents=True)
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(a / "ansible.cfg"),
            ANSIBLE_HOME=str(a / "home"),
            ANSIBLE_LOCAL_TEMP=str(a / "tmp"),
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_TIMEOUT="30",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(cp),
        )
        cmd = [self.ansible_bin, "-i", str(self.inventory), "-f", str(self.n), str(book)]
        return cmd, env, self.ANSIBLE_TIMEOUT

    def ansible_ok(self, done, revision: str) -> str | None:
        import re

        recap = re.findall(
            r"^\S+\s+: ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", done.stdout, re.M
        )
        good = sum(ok == "2" and un == "0" and fa == "0" for ok, un, fa in recap)
        if done.returncode != 0 or good != self.n:
            bad = [ln for ln in done.stdout.splitlines() if "UNREACHABLE" in ln or "FAILED" in ln][:2]
            return (
                f"exit {done.returncode}, {good}/{self.n} ok: {' | '.join(bad) or done.stderr.strip()[-300:]}"
            )
        return self.on_every_host(revision)

    def stop_ssh_masters(self) -> None:
        import subprocess

        cp = self.tmp / "ansible" / "cp"
        if not cp.is_dir():
            return
        for sock in cp.glob("*/*"):  # only the masters this bench's Ansible started, each by its own socket
            try:
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-master"],
                    capture_output=True,
                    timeout=5,
                )
            except (OSError, subprocess.TimeoutExpired):
                pass
            try:
                sock.unlink()
            except OSError:
                pass

    # -------------------------------------------------------------------------------------- engine CPU
    def measure_cpu(self) -> None:
        """In this process: CPU per HostStateChanged of full rollouts, minus the floor doing the same SSH work."""
        import asyncio
        import cProfile
        import pstats
        import time

        from controlroom.config import config
        from controlroom.core import events as ev
        from controlroom.core.identity import Actor
        from controlroom.engine.rollout import Rollout
        from controlroom.fleet.ssh import SSHPool
        from controlroom.journal.journal import Journal

        async def rollout_once(tag: str, profiler: cProfile.Profile | None = None) -> tuple[float, int, str]:
            cfg = config.load(self.write_config(tag, self.toml))
            journal = Journal.open(self.tmp / "state" / tag)
            counted = [0]

            def count(e: ev.Event) -> None:
                counted[0] += isinstance(e, ev.HostStateChanged)

            async with SSHPool(cfg.ssh, cfg.hosts) as pool:
                r = Rollout(cfg, pool, journal, revision=tag, actor=Actor("bench"), confirm="none")
                r.subscribe(count)
                if profiler:
                    profiler.enable()
                c0 = time.process_time()
                fin = await r.run()
                cpu = time.process_time() - c0
                if profiler:
                    profiler.disable()
            journal.close()
            return cpu, counted[0], fin.status

        async def floor_once(tag: str) -> float:
            # what the engine sends: the live revision of the first host, then per host the two steps, each
            # wrapped to leave its receipt, the first also reporting the host's live revision
            c0 = time.process_time()
            first = await floor_rollout(str(self.fleet_dir), [1], [self.live_command])
            ok = await floor_rollout(str(self.fleet_dir), self.batches, self.same_commands(tag))
            cpu = time.process_time() - c0
            if first != 1 or ok != self.n:
                self.fail("floor, same commands (CPU)", f"{ok}/{self.n} hosts ok")
            return cpu

        engine, floor, transitions = [], [], 0
        for _ in range(self.args.rounds):
            self.serial += 1
            cpu, transitions, status = asyncio.run(rollout_once(f"c{self.serial}"))
            if status != ev.R_DONE or transitions < 4 * self.n:  # at least pending, running, checking, done a host
                self.fail("in-process rollout (CPU)", f"{status}, {transitions} transitions")
                continue
            engine.append(cpu)
            self.serial += 1
            floor.append(asyncio.run(floor_once(f"c{self.serial}")))
        if not engine:
            return
        prof = cProfile.Profile()
        self.serial += 1
        asyncio.run(rollout_once(f"c{self.serial}", prof))
        ours, total = self.engine_share(pstats.Stats(prof))
        e, f = self.c.median(engine), self.c.median(floor)
        per = (e - f) / transitions * 1000
        self.cpu = {
            "rollout in process, CPU s (median)": f"{e:.3f}",
            "HostStateChanged events per rollout": f"{transitions} ({transitions // self.n} per host)",
            "CPU per transition, all in (ms)": f"{e / transitions * 1000:.3f}",
            "floor, same commands, CPU s (median)": f"{f:.3f}",
            "engine + journal + SSHPool CPU per transition (ms), by subtraction": f"{per:.3f}",
            "engine + journal share of the main thread's busy time, cProfile": f"{ours / total:.0%}",
            "engine + journal alone, CPU per transition (ms), by that share": f"{ours / total * e / transitions * 1000:.3f}",
        }
        self.cpu_per_transition = per

    @staticmethod
    def engine_share(stats) -> tuple[float, float]:
        """(seconds in the engine, journal and events, with what they call but the SSH pool, total seconds)."""
        ours = ("controlroom/engine/rollout.py", "controlroom/journal/journal.py", "controlroom/core/events.py")
        theirs = ("controlroom/fleet/ssh.py", "asyncssh", "asyncio")

        def mine(fn) -> bool:
            return fn[0].replace(os.sep, "/").endswith(ours)

        total = own = 0.0
        for fn, (_cc, _nc, tt, _ct, callers) in stats.stats.items():
            if fn[0] == "~" and ("of 'select." in fn[2] or "poll" in fn[2]):
                continue  # the event loop waiting for the network: idle, not CPU
            total += tt
            if mine(fn):
                own += tt
            elif not any(t in fn[0] for t in theirs):
                # a callee outside the engine (sqlite3, json, dataclasses, ...): count its time, with what it calls
                # in turn, spent on behalf of engine or journal code
                own += sum(c[3] for caller, c in callers.items() if mine(caller))
        return own, total

    # -------------------------------------------------------------------------------------- report
    def stats(self, name: str) -> tuple[float, float, float | None] | None:
        s = self.samples.get(name)
        if not s:
            return None
        walls = [w for w, _ in s]
        cpus = [c for _, c in s if c is not None]
        return self.c.median(walls), min(walls), (self.c.median(cpus) if cpus else None)

    def rows(self) -> list[tuple[str, ...]]:
        floor = self.stats("floor")
        rows = []
        for c in self.contenders:
            st = self.stats(c.name)
            if st is None:
                why = "; ".join(dict.fromkeys(self.failures.get(c.name, ["not measured"])))
                rows.append((c.name, "-", "-", "-", "-", "0", f"failed: {why[:160]}"))
                continue
            med, lo, cpu = st
            ratio = f"{med / floor[0]:.2f}x" if floor and not c.name.startswith("python") else "-"
            bad = len(self.failures.get(c.name, []))
            runs = f"{len(self.samples[c.name])}" + (f" (+{bad} failed)" if bad else "")
            rows.append(
                (c.name, f"{med:.3f}", f"{lo:.3f}", "-" if cpu is None else f"{cpu:.3f}", ratio, runs, "")
            )
        return rows

    def verdicts(self) -> list[str]:
        def med(name: str) -> float | None:
            st = self.stats(name)
            return st[0] if st else None

        out = []
        cr, fl, an = med("controlroom"), med("floor"), med("ansible-playbook")
        if cr and an:
            out.append(
                f"ansible-playbook / controlroom = {an / cr:.1f}x (target >= 7x): "
                f"{'MET' if an / cr >= 7 else 'MISSED'}"
            )
        if cr and fl:
            out.append(
                f"controlroom (cold: its server starts with the deploy) / floor = {cr / fl:.2f}x (target <= 1.30x): "
                f"{'MET' if cr / fl <= 1.3 else 'MISSED'}"
            )
        cold = med("controlroom, its server not warm")
        if cold and cr and fl:
            out.append(f"controlroom without the warm connects / floor = {cold / fl:.2f}x; with them / without = "
                       f"{cr / cold:.2f}x")
        warm = med("controlroom, server up")
        if warm and fl:
            out.append(f"controlroom, server up / floor = {warm / fl:.2f}x; cold / server up = {cr / warm:.2f}x")
        py, client, server = (med(n) for n in ("python + import asyncssh", "python + import the deploy client",
                                               "python + import the server"))
        if py and client and server:
            out.append(
                f"start-up: the deploy client's interpreter and imports to its server's spawn {client:.3f} s, the "
                f"server's {server:.3f} s (the floor pays python + asyncssh, {py:.3f} s)"
            )
        gcm = med("floor, controlroom's cipher order")
        if cr and gcm:
            out.append(f"controlroom / the floor with controlroom's cipher order = {cr / gcm:.2f}x (the floor with "
                       "asyncssh's own order is the one the target is set against)")
        an_fl = med("ansible-playbook"), med("floor")
        if all(an_fl):
            out.append(
                f"for scale: ansible-playbook / floor = {an_fl[0] / an_fl[1]:.1f}x, the most any asyncssh "
                "client could reach here"
            )
        same = med("floor, controlroom's commands")
        if cr and same:
            out.append(
                f"controlroom / floor, controlroom's commands = {cr / same:.2f}x: the engine, journal and CLI on the "
                "same SSH work"
            )
        if hasattr(self, "cpu_per_transition"):
            per = self.cpu_per_transition
            out.append(
                f"engine + journal (+ pool) CPU per host transition = {per:.3f} ms (target < 1 ms): "
                f"{'MET' if per < 1 else 'MISSED'}"
            )
        return out

    def versions(self) -> str:
        return self.c.versions(("controlroom",), self.ansible_version)

    def report(self) -> None:
        head = ("contender", "median s", "min s", "client CPU s", "vs floor", "runs", "notes")
        rows = self.rows()
        machine = self.c.machine_line()
        plan = " / ".join(str(b) for b in getattr(self, "batches", [])) or "?"
        title = (
            f"rollout of 2 trivial steps to {self.n} simulated hosts on 127.0.0.1 in 3 phases ({plan}), "
            f"{self.args.rounds} rounds, rotating order"
        )
        print()
        print(title)
        print(f"machine: {machine}")
        print(f"also: {self.versions()}")
        print(
            f"load average (1 min) before {self.load_before}, after {self.c.loadavg()}: other work on the "
            "machine shows up as noise"
        )
        if rows:
            widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
            for r in [head, *rows]:
                cells = [
                    c.ljust(w) if i < 1 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=False))
                ]
                print("  ".join(cells) + "  " + r[-1])
        if self.cpu:
            print()
            width = max(map(len, self.cpu))
            for k, v in self.cpu.items():
                print(f"{k.ljust(width)}  {v}")
        print()
        for v in self.verdicts():
            print(v)
        self.print_notes()
        print(LEGEND)
        if self.args.markdown and rows:
            print("\n----- markdown -----\n")
            print(f"{title[0].upper()}{title[1:]}. {machine}.\n")
            print("| " + " | ".join(head) + " |")
            print("|---|" + "|".join(["---:"] * (len(head) - 2)) + "|---|")
            for r in rows:
                print("| " + " | ".join(r) + " |")
            if self.cpu:
                print(f"\n| engine cost (in process, fleet of {self.n}) | |\n|---|---:|")
                for k, v in self.cpu.items():
                    print(f"| {k} | {v} |")
            print()
            for v in self.verdicts():
                print(f"- {v}")
            print()
            print(" ".join(LEGEND.split()))


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--worker" and sys.argv[2] == "floor":
        sys.exit(worker_floor(*sys.argv[3:]))
    sys.exit(main())

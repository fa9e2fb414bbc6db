"""Kill-switch benchmark: one flag flipped on every host of a simulated fleet, from the command to the last receipt.

Run by hand, never by CI; nothing here asserts on a timing. One run starts one fleet (`controlroom fleet`, in its own
process) and measures, in rounds with the order rotated so machine noise spreads over all of them:

  warm        a `flag_set` request to a running server whose connections are open (what the app's confirm or a
              second `controlroom flag` costs): request sent to the reply, which comes once every host confirmed
  cold        a fresh `controlroom flag new_search on|off --yes` process with no server running yet (it starts one,
              which connects to every host): spawn to exit
  floor warm  the same command on connections a bare asyncssh script holds open (what warm can at best be)
  floor cold  a bare asyncssh script in a fresh process doing the same on every host: connect, the same one command
              (write a temp file, sync, rename, sha256sum), check the hash
  ansible     `ansible all -m copy` of the same file, when ansible is installed (a reference, not a goal)

    .venv/bin/python bench/flags.py                 # 150 hosts, 7 rounds
    .venv/bin/python bench/flags.py --hosts 50 --rounds 3

Goals (issue 9): warm median <= 0.5 s and p99 <= 1 s; cold within 1.3x of the floor.
"""

# The floor runs this very file as a fresh process (`--worker floor ...`); at module level it imports only what a
# bare script would.
from __future__ import annotations

import os
import sys


def worker_floor(fleet_dir: str, command_file: str, sha: str) -> int:
    """Connect to every host, run the push command, check each reported hash; exit 0 when all match."""
    import asyncio
    import json

    import asyncssh

    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        ports = json.load(f)["hosts"]
    with open(command_file) as f:
        command = f.read()
    options = asyncssh.SSHClientConnectionOptions(
        known_hosts=asyncssh.read_known_hosts(os.path.join(fleet_dir, "known_hosts")),
        client_keys=asyncssh.load_keypairs([os.path.join(fleet_dir, "client_key")]),
        username="deploy", connect_timeout=10)

    async def one(port: int) -> bool:
        async with asyncssh.connect("127.0.0.1", port, options=options, config=None) as conn:
            res = await conn.run(command)
            return f"controlroom-sha256:{sha}" in str(res.stdout)

    async def main() -> int:
        ok = await asyncio.gather(*(one(p) for p in ports.values()), return_exceptions=True)
        return 0 if all(x is True for x in ok) else 1

    return asyncio.run(main())


def main() -> int:
    import argparse
    import asyncio
    import secrets
    import shutil
    import statistics
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench._common import FleetProcess, controlroom_cmd, loadavg, machine_line
    from controlroom.config import config
    from controlroom.fleet import flagfile as flags

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warm-rounds", type=int, default=30)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-flags-"))
    fleet = FleetProcess(tmp / "fleet", args.hosts)
    cfg_path = tmp / "fleet" / "controlroom.toml"
    print(machine_line())
    print(f"load before: {loadavg()}")
    results: dict[str, list[float]] = {"warm": [], "floor warm": [], "cold": [], "floor cold": [],
                                       "ansible copy": []}
    notes: list[str] = []

    def cr(*a: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(controlroom_cmd() + [*a, "--config", str(cfg_path)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    try:
        fleet.start()
        cfg = config.load(cfg_path)
        value = ["on"]

        def flip() -> str:
            value[0] = "off" if value[0] == "on" else "on"
            return value[0]

        def cold() -> float:
            cr("server", "stop", "--force")
            t0 = time.perf_counter()
            res = cr("flag", "new_search", flip(), "--yes")
            took = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(f"controlroom flag failed: {res.stdout} {res.stderr}")
            return took

        def floor() -> float:
            f = flags.with_values(cfg.flags.flags, {"new_search": flip()}, version=10_000, by="bench",
                                  at=time.time())
            data = f.render()
            cmd_file = tmp / "push.sh"
            cmd_file.write_text(flags.push_command(cfg.flags.file, data, secrets.token_hex(4)))
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, __file__, "--worker", "floor", str(tmp / "fleet"), str(cmd_file),
                                  f.sha256()], capture_output=True, text=True, timeout=120)
            took = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(f"floor failed: {res.stderr[-500:]}")
            return took

        ansible = shutil.which("ansible")

        def ansible_copy() -> float:
            inv = tmp / "inventory.ini"
            ports = __import__("json").loads((tmp / "fleet" / "fleet.json").read_text())["hosts"]
            inv.write_text("".join(f"{h} ansible_host=127.0.0.1 ansible_port={p} ansible_user=deploy\n"
                                   for h, p in ports.items()))
            src = tmp / "flags.toml"
            src.write_bytes(flags.with_values(cfg.flags.flags, {"new_search": flip()}, version=1, by="bench",
                                              at=time.time()).render())
            env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="True",
                       ANSIBLE_SSH_ARGS=f"-o UserKnownHostsFile={tmp / 'fleet' / 'known_hosts'}")
            t0 = time.perf_counter()
            res = subprocess.run([ansible, "all", "-i", str(inv), "-f", str(args.hosts), "--private-key",
                                  str(tmp / "fleet" / "client_key"), "-m", "copy", "-a",
                                  f"src={src} dest=flags.toml"], capture_output=True, text=True, timeout=600,
                                 env=env)
            took = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(f"ansible failed: {res.stdout[-300:]}")
            return took

        contenders = [("cold", cold), ("floor cold", floor)]
        if ansible:
            contenders.append(("ansible copy", ansible_copy))
        else:
            notes.append("ansible: not installed here; its `copy` module was not measured")
        cold()  # an untimed round: files, page cache, the journal
        floor()
        for r in range(args.rounds):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            for name, fn in order:
                results[name].append(fn())

        async def warm() -> None:
            from controlroom.server.client import connect

            c = await connect(cfg)
            try:
                await c.request("flag_set", flag="new_search", value=flip())  # connections up
                for _ in range(args.warm_rounds):
                    t0 = time.perf_counter()
                    done = await c.request("flag_set", flag="new_search", value=flip(), reason="bench")
                    results["warm"].append(time.perf_counter() - t0)
                    if done["confirmed"] != done["total"]:
                        raise RuntimeError(f"warm push: {done['failed'][:3]}")
            finally:
                await c.close()

        async def floor_warm() -> None:
            import asyncssh

            ports = __import__("json").loads((tmp / "fleet" / "fleet.json").read_text())["hosts"]
            options = asyncssh.SSHClientConnectionOptions(
                known_hosts=asyncssh.read_known_hosts(str(tmp / "fleet" / "known_hosts")),
                client_keys=asyncssh.load_keypairs([str(tmp / "fleet" / "client_key")]), username="deploy")
            conns = await asyncio.gather(*(asyncssh.connect("127.0.0.1", p, options=options, config=None)
                                           for p in ports.values()))
            try:
                for _ in range(args.warm_rounds):
                    f = flags.with_values(cfg.flags.flags, {"new_search": flip()}, version=10_000, by="bench",
                                          at=time.time())
                    cmd = flags.push_command(cfg.flags.file, f.render(), secrets.token_hex(4))
                    t0 = time.perf_counter()
                    outs = await asyncio.gather(*(c.run(cmd) for c in conns))
                    results["floor warm"].append(time.perf_counter() - t0)
                    if not all(f.sha256() in str(o.stdout) for o in outs):
                        raise RuntimeError("floor warm: a hash did not match")
            finally:
                for c in conns:
                    c.close()

        asyncio.run(warm())
        asyncio.run(floor_warm())
    finally:
        cr("server", "stop", "--force")
        fleet.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

    print(f"load after: {loadavg()}")
    print(f"kill switch on {args.hosts} hosts, command to last receipt (seconds)")
    print(f"{'contender':<14} {'n':>3} {'median':>8} {'p99':>8} {'min':>8}")
    for name, xs in results.items():
        if xs:
            print(f"{name:<14} {len(xs):>3} {statistics.median(xs):8.3f} {q(xs, 0.99):8.3f} {min(xs):8.3f}")
    if results["cold"] and results["floor cold"]:
        ratio = statistics.median(results["cold"]) / statistics.median(results["floor cold"])
        print(f"cold / floor cold (medians): {ratio:.2f}x (goal <= 1.3x)")
    if results["warm"]:
        print(f"warm: median {statistics.median(results['warm']):.3f} s (goal <= 0.5), "
              f"p99 {q(results['warm'], 0.99):.3f} s (goal <= 1)")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker_floor(*sys.argv[3:]))
    sys.exit(main())

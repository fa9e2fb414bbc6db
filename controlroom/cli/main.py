"""`controlroom` and its subcommands. Errors are one line on stderr; exit 2 for usage and config errors."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from controlroom.cli.parser import build_parser
from controlroom.core import startup
from controlroom.core.errors import ControlroomError, UsageError


def error_line(text: object) -> None:
    """The one error line on stderr: ``controlroom: ...``. What it says may carry outside text (a lock's reason,
    the holder a host's lease names, a metrics source's error), so it goes through the neutraliser as every line
    the app shows does: no escape sequence reaches the terminal, one line, bounded."""
    from controlroom.core.text import LINE_LIMIT, clean

    try:
        print(f"controlroom: {clean(text, LINE_LIMIT)}", file=sys.stderr, flush=True)
    except BrokenPipeError:  # nobody reads our errors either
        pass


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the program: no collecting while the command imports what it needs
        startup.importing()
    try:
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (cli/complete.py): answer and exit
            import argcomplete

            argcomplete.autocomplete(parser, always_complete_options=False)  # options after a "-"
        args = parser.parse_args(argv)
        return dispatch(args)
    except ControlroomError as e:
        error_line(e)
        return e.exit_code
    except BrokenPipeError:  # `controlroom run ... | head`: the reader left, so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except Exception as e:  # the last resort: one line, the details only when asked for
        if os.environ.get("CONTROLROOM_DEBUG"):
            raise
        error_line(f"internal error: {type(e).__name__}: {e} (set CONTROLROOM_DEBUG=1 for details)")
        return 70
    finally:
        startup.collecting()


def dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    yes = getattr(args, "yes", False)
    if yes or "controlroom.server.anyway" in sys.modules:  # a fresh process's client already says no
        from controlroom.server.anyway import cli_answers

        cli_answers(yes)  # --yes acts on a deploy another person drives without asking
    if cmd not in ("deploy", "rollback", "serve"):  # those collect once their start-up is done
        startup.collecting()
    if cmd == "check":
        return cmd_check(args)
    if cmd == "run":
        return cmd_run(args)
    if cmd == "fleet":
        return cmd_fleet(args)
    if cmd in ("deploy", "rollback"):
        from controlroom.cli import start

        begun = start.early(cmd, args)  # its server's interpreter starts while this one reads its config and imports
        try:
            cfg = _load(args)
        except BaseException:
            if begun is not None:
                begun.withdraw()  # it has made nothing
            raise
        starting = start.finish(cmd, args, begun, cfg)
        startup.collecting()
        from controlroom.cli import session

        return getattr(session, f"cmd_{cmd}")(cfg, args, starting)
    if cmd in ("log", "lock", "unlock"):
        from controlroom.cli import deploy as deploycli

        return getattr(deploycli, f"cmd_{cmd}")(_load(args), args)
    if cmd in ("flag", "flags"):
        from controlroom.cli import flags as flagcli

        return getattr(flagcli, f"cmd_{cmd}")(_load(args), args)
    if cmd == "metrics":
        from controlroom.cli import metrics as metricscli

        return metricscli.cmd_metrics(_load(args), args)
    if cmd in ("diff", "stage"):
        from controlroom.cli import diff as diffcli

        return getattr(diffcli, f"cmd_{cmd}")(_load(args), args)
    if cmd in ("serve", "server"):
        from controlroom.cli import server as servercli

        return getattr(servercli, f"cmd_{cmd}")(_load(args), args)
    if cmd in ("history", "timeline", "stats"):
        from controlroom.cli import history as historycli

        return getattr(historycli, f"cmd_{cmd}")(_load(args), args)
    if cmd == "journal":
        from controlroom.cli import journal as journalcli

        return journalcli.cmd_journal(args)
    if cmd == "replay":
        from controlroom.cli import history as historycli

        cfg = _load(args)
        number, speed = historycli.replay_target(cfg, args)  # a bad number or speed: one line, exit 2
        from controlroom.app.app import run_app  # the app, read-only, on that deploy's timeline

        return run_app(cfg, replay=(number, speed))
    if cmd == "web":
        from controlroom.cli.web import cmd_web  # textual-serve: imported by this command only

        return cmd_web(args)
    if cmd == "demo":
        from controlroom.cli.demo import cmd_demo  # starts the fleet, then the app

        return cmd_demo(args)
    if cmd is None:
        from controlroom.app.app import run_app  # the only place the CLI reaches Textual

        return run_app(_load(args), read_only=args.read_only)
    raise UsageError(f"`controlroom {cmd or ''}` is not available yet")


def _load(args: argparse.Namespace):
    from controlroom.config import config

    return config.load(getattr(args, "config", None))


# ------------------------------------------------------------------------------------------------ check


def cmd_check(args: argparse.Namespace) -> int:
    from controlroom.config.reader import MAX_ERRORS
    from controlroom.core.errors import ConfigErrors
    from controlroom.core.text import clean

    try:
        cfg = _load(args)
    except ConfigErrors as e:  # every error of the run, one line each, bad values before missing files
        if args.json:
            _check_failed_json([str(err) for err in e.errors[:MAX_ERRORS]], len(e.errors))
        lines = [f"controlroom: {clean(err, None)}\n" for err in e.errors[:MAX_ERRORS]]
        if len(e.errors) > MAX_ERRORS:
            lines.append(f"controlroom: ... and {len(e.errors) - MAX_ERRORS} more errors\n")
        sys.stderr.write("".join(lines))
        return e.exit_code
    except ControlroomError as e:  # unreadable, not TOML: the one error line (and the JSON saying so)
        if args.json:
            _check_failed_json([str(e)], 1)
        raise
    journal_ok, journal_said = _check_journal(cfg.state.journal)
    if args.json:
        from controlroom.cli.jsonout import emit

        out = check_json(cfg)
        if cfg.state.journal:
            out["journal_check"] = {"ok": journal_ok, "said": journal_said}
            out["ok"] = journal_ok
        emit(out)
        if not journal_ok:
            sys.stderr.write(f"controlroom: journal: {clean(journal_said, None)}\n")
        return 0 if journal_ok else CHECK_FAILED
    print = _cleaned_print(clean)  # names and descriptions from the config are shown, never interpreted
    print(f"{cfg.path}: ok")
    print(f"hosts: {len(cfg.hosts)}")
    for g, names in cfg.groups.items():
        if g == "all":
            continue
        colos = sorted({c for n in names if (c := cfg.host(n).colo)})
        where = f" (colo {', '.join(colos)})" if colos else ""
        print(f"  {g:<16} {len(names):>5} hosts{where}")
    from controlroom.config.inventory import origin_lines

    print("from:")  # where each host is written: controlroom.toml, an Ansible inventory, an ssh_config
    for line in origin_lines(cfg.groups["all"], cfg.origins, str(cfg.path.parent.resolve())) + list(cfg.notes):
        print(f"  {line}")
    print(f"phases: {len(cfg.phases)}")
    for ph in cfg.phases:
        extra = []
        if ph.parallel < len(ph.hosts):
            extra.append(f"{ph.parallel} at a time")
        extra.append(f"max_failed {ph.max_failed}")
        if ph.bake:
            extra.append(f"bake {ph.bake:g} s")
        if ph.gate:
            extra.append("gate " + " and ".join(ph.gate))
        if not ph.auto:
            extra.append("then waits for the operator")
        print(f"  {ph.name:<16} {len(ph.hosts):>5} hosts  {', '.join(extra)}")
    if cfg.flags.flags:
        print(f"flags: {len(cfg.flags.flags)}")
        for fl in cfg.flags.flags:
            kind = "kill switch" if fl.kind == "kill_switch" else "feature"
            print(f"  {fl.name:<24} {kind}{'  ' + fl.description if fl.description else ''}")
    else:
        print("flags: none")
    if cfg.metrics.series:
        print(f"metrics: {len(cfg.metrics.series)} series from {cfg.metrics.source or 'json'}")
        for s in cfg.metrics.series:
            bounds = [f"max {s.max:g}" if s.max is not None else "", f"min {s.min:g}" if s.min is not None else ""]
            print(f"  {s.name:<24} {' '.join(b for b in bounds if b)}")
    else:
        print("metrics: none")
    print(f"deploy: {len(cfg.deploy.steps)} steps" + (", health check" if cfg.deploy.health else "")
          + (f", {len(cfg.deploy.rollback)} rollback steps" if cfg.deploy.rollback else ""))
    n = cfg.notify  # never the webhook URL: it is a secret
    chat = (["webhook set"] if n.webhook else []) + ([f"webhook from ${n.webhook_env}"] if n.webhook_env and not
                                                     n.webhook else [])
    chat += (["irker"] if n.irker else []) + (["command"] if n.command else [])
    print(f"notify: {', '.join(chat) or 'none'}")
    # a shared journal's URL never holds a password (the config refuses one); redacted all the same
    print(f"state: {cfg.state.dir}" + (f", journal {_redact(cfg.state.journal)}" if cfg.state.journal else ""))
    if not journal_ok:
        sys.stdout.flush()
        sys.stderr.write(f"controlroom: journal: {clean(journal_said, None)}\n")
        return CHECK_FAILED
    if journal_said:
        print(f"journal: {journal_said}")
    return 0


CHECK_FAILED = 2  # as for a config that cannot be used (ConfigError)


def _check_journal(url: str | None) -> tuple[bool, str]:
    """A shared journal ([state] journal) tried for `check`, bounded (pg.CHECK_TIMEOUT): whether it can be used,
    and what to say of it (never its password); (True, "") without one (the embedded journal is not tried)."""
    if not url:
        return True, ""
    from controlroom.journal import pg

    try:
        return True, pg.probe(url)
    except ControlroomError as e:
        return False, pg.scrub(str(e), url)


def _redact(url: str) -> str:
    from controlroom.journal import pg

    return pg.redact(url)


def _check_failed_json(errors: list[str], total: int) -> None:
    from controlroom.cli.jsonout import emit

    emit({"ok": False, "errors": errors, "error_count": total})  # stderr still has the lines


def check_json(cfg) -> dict:
    """`check --json`: the config as controlroom reads it (never the webhook URL: a secret)."""
    n = cfg.notify
    return {
        "ok": True, "path": str(cfg.path),
        "hosts": [{"name": h.name, "address": h.address, "port": h.port, "user": h.user, "group": h.group,
                   "colo": h.colo, "origins": list(cfg.origins.get(h.name, ()))} for h in cfg.hosts],
        "notes": list(cfg.notes),  # what reading the inventories passed over
        "groups": {g: list(names) for g, names in cfg.groups.items() if g != "all"},
        "phases": [{"name": ph.name, "hosts": list(ph.hosts), "parallel": ph.parallel, "max_failed": ph.max_failed,
                    "bake": ph.bake, "gate": list(ph.gate), "auto": ph.auto} for ph in cfg.phases],
        "flags": [{"name": f.name, "kind": f.kind, "default": f.default, "description": f.description}
                  for f in cfg.flags.flags],
        "metrics": {"source": cfg.metrics.source if cfg.metrics.series else None,
                    "series": [{"name": s.name, "max": s.max, "min": s.min, "unit": s.unit}
                               for s in cfg.metrics.series]},
        "deploy": {"steps": list(cfg.deploy.steps), "health": cfg.deploy.health,
                   "rollback": list(cfg.deploy.rollback)},
        "notify": {"webhook": bool(n.webhook), "webhook_env": n.webhook_env if not n.webhook else None,
                   "irker": bool(n.irker), "command": bool(n.command)},
        "state_dir": str(cfg.state.dir),
        **({"journal": _redact(cfg.state.journal)} if cfg.state.journal else {}),  # PostgreSQL, shared ([state] journal)
    }


def _cleaned_print(clean):
    """print() for one line whose parts came from a file: control characters shown, never sent to the terminal."""
    import builtins

    def show(*parts: object) -> None:
        builtins.print(clean(" ".join(str(p) for p in parts), None))

    return show


# ------------------------------------------------------------------------------------------------ run


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from controlroom.config import inventory
    from controlroom.fleet.ssh import SSHPool, raise_nofile_limit

    cfg = _load(args)
    names = tuple(h.name for h in cfg.hosts)
    if args.hosts is not None:  # --hosts "" selects nothing, never everything
        try:
            selected = inventory.select(args.hosts, names, cfg.groups)
        except ValueError as e:
            raise UsageError(f"--hosts: {e}") from None
    else:
        selected = list(names)
    if args.parallel is not None and args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    warning = raise_nofile_limit(len(selected))
    if warning:
        print(warning, file=sys.stderr)
    from controlroom.cli import runout
    from controlroom.cli.jsonout import emit

    width = max(len(n) for n in selected)
    tty = sys.stdout.isatty()

    def show(res) -> None:  # --each: a block per host as it finishes; what hosts print is cleaned (runout)
        if args.json:
            emit(runout.host_json(res))
            return
        label = res.label
        if tty and not os.environ.get("NO_COLOR"):
            label = f"\033[{'32' if res.ok else '31'}m{label:<9}\033[0m"
        else:
            label = f"{label:<9}"
        print("\n".join(runout.each(res, width, label)), flush=True)

    async def go():
        async with SSHPool(cfg.ssh, (cfg.host(n) for n in selected)) as pool:
            return await pool.run_many(selected, args.cmd, parallel=args.parallel, timeout=args.timeout,
                                       on_result=show if args.each or args.json else None)

    t0 = time.monotonic()
    results = asyncio.run(go())
    took = time.monotonic() - t0
    if not args.each and not args.json:
        print("\n".join(runout.grouped(results, selected)), flush=True)
    counts = Counter(r.label for r in results)
    order = sorted(counts, key=lambda k: (k != "ok", k))
    summary = ", ".join(f"{counts[k]} {k}" for k in order)
    if args.json:
        emit({"summary": True, "hosts": len(results), "ok": sum(r.ok for r in results),
              "results": {k: counts[k] for k in order}, "seconds": round(took, 3)})
    else:
        print(f"{len(results)} host{'s' if len(results) != 1 else ''}: {summary} ({took:.1f} s)")
    _record_run(cfg, args.cmd, len(results), summary)
    return 0 if all(r.ok for r in results) else 1


RUN_LOG_LIMIT = 200  # characters of the command in the deploy log


def run_log_text(cmd: str, hosts: int, summary: str) -> str:
    """The deploy log's line for a `run`: the command on one line and bounded, how many hosts, the result."""
    from controlroom.core.text import clean

    return f"'{clean(' '.join(cmd.split()), RUN_LOG_LIMIT)}' on {hosts} host{'s' if hosts != 1 else ''}: {summary}"


def _record_run(cfg, cmd: str, hosts: int, summary: str) -> None:
    """Put the run in the deploy log; a journal that cannot be opened costs a one-line warning, never the run."""
    from controlroom.core.identity import Actor
    from controlroom.core.text import clean
    from controlroom.journal.journal import Journal

    try:
        journal = Journal.open(cfg.state.dir, url=cfg.state.journal)
        try:
            journal.add_log(Actor.here(), "RUN", run_log_text(cmd, hosts, summary))
        finally:
            journal.close()
    except Exception as e:  # noqa: BLE001 - the commands ran; their record is best effort
        print(f"controlroom: warning: run not recorded in the deploy log: {clean(e, 300) or type(e).__name__}",
              file=sys.stderr)


# ------------------------------------------------------------------------------------------------ fleet


def cmd_fleet(args: argparse.Namespace) -> int:
    import asyncio

    from controlroom.demo.fleet import serve

    if args.hosts < 1:
        raise UsageError("--hosts must be at least 1")
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.dir, args.hosts, args.faults, metrics=args.metrics, stage=args.stage,
                      inventory=args.inventory))
    return 0


"""The command line's grammar: every command and its options, and nothing that runs them.

Building the parser imports argparse alone: a command's module (and what it needs: the journal, the server, httpx,
Textual) is imported by cli.main when that command is dispatched, so `controlroom log` never pays for the metrics
client nor `controlroom serve` for the deploy printer.
"""

from __future__ import annotations

import argparse

from controlroom.core.errors import UsageError

METRICS_WIDTH = 30  # `controlroom metrics --width`: the sparkline's default width


class _Version(argparse.Action):
    """`controlroom --version`: the installed package's version, looked up only when asked (importlib.metadata is
    not free at every start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("controlroom")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        print(f"controlroom {v}", flush=True)
        parser.exit()


def _json_option(parser, help: str = "JSON for scripts (README: Output for scripts)") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def _completer(name: str):
    """cli/complete.py's completer `name`, imported only when the shell asks for it (argcomplete calls it with
    keyword arguments): building the parser for any command imports no more than argparse."""

    def completer(**kw):
        from controlroom.cli import complete

        return getattr(complete, name)(**kw)

    return completer


def _hosts_option(parser, help: str) -> None:
    parser.add_argument("--hosts", metavar="PATTERN|GROUP", help=help).completer = _completer("hosts")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see `{self.prog} --help`)")  # main() already says "controlroom: "


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                        help="controlroom.toml to use (default: $CONTROLROOM_CONFIG, then ./controlroom.toml)")
    p = _Parser(prog="controlroom", parents=[common],
                description="A terminal release control room. With no command, opens the full-screen app.")
    p.add_argument("--read-only", action="store_true", help="watch the control room without acting")
    p.add_argument("--version", action=_Version, help="the installed version, and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _json_option(sub.add_parser("check", parents=[common], help="validate the config and print a summary"))

    r = sub.add_parser("run", parents=[common],
                       help="run a shell command on hosts; hosts with identical output are shown as one block")
    r.add_argument("cmd", metavar="CMD", help="the command (quote it as one argument)")
    r.add_argument("--each", action="store_true",
                   help="one block per host, as each one finishes (default: hosts with identical output together)")
    _hosts_option(r, "which hosts: a group, web[001:010], web0*, a,b")
    r.add_argument("--parallel", type=int, metavar="N", help="hosts at a time (default: [inventory.ssh] max_parallel)")
    r.add_argument("--timeout", type=float, metavar="SECONDS", help="per-command timeout (default: command_timeout)")
    _json_option(r, "JSON for scripts: one object per host as it finishes, then a summary object")

    f = sub.add_parser("fleet", help="run a simulated fleet of SSH hosts on 127.0.0.1 until interrupted")
    f.add_argument("--hosts", type=int, default=150, metavar="N")
    f.add_argument("--dir", required=True, metavar="DIR", help="where keys, host directories and the config go")
    f.add_argument("--faults", metavar="SPEC", help="e.g. web003=refuse,web010=hang,web020=fail,web040=slow:5")
    f.add_argument("--metrics", action="store_true",
                   help="hosts serve /metrics, the fleet answers its queries and gates the canary; DIR/prometheus.yml")
    f.add_argument("--stage", action="store_true",
                   help='the config gets [release] stage = "make build REV={revision}" (the demo repo\'s Makefile)')
    f.add_argument("--inventory", choices=["toml", "ansible"], default="toml",
                   help="where the config's hosts are: in controlroom.toml, or an Ansible INI inventory beside it")

    for family in (_deploy, _server, _flags, _diff, _metrics, _record, _journal):
        family(sub, common)

    w = sub.add_parser("web", parents=[common],
                       help="serve the control room to browsers, for watchers (needs the extra: pip install "
                            "'controlroom[web]')")
    w.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="where to listen (default: 127.0.0.1:8765, loopback: reach it with `ssh -L`); any other "
                        "address needs --token-file")
    w.add_argument("--token-file", metavar="FILE",
                   help="a file whose first word is the token every request must carry (?token= once, then a "
                        "cookie); printed nowhere")
    w.add_argument("--allow-acting", action="store_true",
                   help="browsers may act as the app would (loopback and --token-file only); without it every browser "
                        "is read-only")
    w.add_argument("--public-url", metavar="URL",
                   help="the URL browsers use, behind a reverse proxy (e.g. https://deploys.example.com); default: "
                        "the address each browser asked for")

    d = sub.add_parser("demo", help="start a simulated fleet and open the control room on it")
    d.add_argument("--hosts", type=int, default=150, metavar="N")
    d.add_argument("--faults", metavar="SPEC", help="faults to inject, as for `controlroom fleet`")
    d.add_argument("--dir", metavar="DIR", help="fleet directory (default: a new temporary one); attaches if running")
    return p


def _deploy(sub, common) -> None:
    """deploy, rollback, log, lock, unlock: run by controlroom.cli.deploy."""
    d = sub.add_parser("deploy", parents=[common], help="ship the staged revision, phase by phase, headless")
    d.add_argument("--revision", "-r", metavar="R", help="revision to ship (default: [release] staged)")
    d.add_argument("--yes", "-y", action="store_true", help="answer yes to every question (start and gates)")
    d.add_argument("--auto", action="store_true", help="go on past every phase by itself while gates hold")
    d.add_argument("--resume", action="store_true", help="carry on the last deploy (after a crash or a halt)")
    d.add_argument("--force", action="store_true", help="deploy although a person locked the fleet")
    d.add_argument("--reason", metavar="TEXT", help="why --force (required with it; goes into the log)")
    d.add_argument("--override-gate", metavar="REASON",
                   help="pass a gate that does not hold (failed or could not be checked), saying why (in the log)")
    d.add_argument("--detach", action="store_true",
                   help="start the deploy in the control-room server and return at once with its id (needs --auto "
                        "or --yes)")
    d.add_argument("--follow", action="store_true",
                   help="follow the deploy the server runs (re-attach); on a terminal, answer its questions")
    _json_option(d, "the engine's events as JSON, one object a line (the other lines go to stderr)")

    r = sub.add_parser("rollback", parents=[common], help="put the previous revision back on every done host")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask")

    lg = sub.add_parser("log", parents=[common], help="the deploy log; `log add MSG` adds an entry")
    lg.add_argument("words", nargs="*", metavar="add MSG")
    lg.add_argument("-n", type=int, default=30, metavar="N", help="how many entries (default 30)")
    _json_option(lg, "JSON for scripts: one entry a line (the lock first, when the fleet is locked)")

    lk = sub.add_parser("lock", parents=[common], help="lock the fleet: NO DEPLOY PLEASE")
    lk.add_argument("message", nargs="+", metavar="MSG")
    lk.add_argument("--takeover", "--yes", "-y", dest="takeover", action="store_true",
                    help="replace the lock someone holds without asking (goes into the log)")
    ul = sub.add_parser("unlock", parents=[common], help="release the lock")
    ul.add_argument("--force", action="store_true",
                    help="release another person's lock, or the lock a halted deploy keeps (goes into the log)")


def _server(sub, common) -> None:
    """serve, server: run by controlroom.cli.server."""
    s = sub.add_parser("serve", parents=[common], help="run the control-room server in the foreground (systemd)")
    s.add_argument("--idle", type=float, default=600.0, metavar="SECONDS",
                   help="exit after this long with no operation and no client (default 600; 0 never)")
    s.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--warm", action="store_true",
                   help="internal: open the fleet's SSH connections at once, before any operation asks (connections "
                        "only, nothing runs on a host); passed only when a deploy, resume or rollback starts the "
                        "server, never the default")
    s.add_argument("--metrics", metavar="HOST:PORT",
                   help="also serve the server's own metrics for Prometheus at http://HOST:PORT/metrics")
    sv = sub.add_parser("server", parents=[common], help="the server of this state directory: status | stop")
    sv.add_argument("action", choices=("status", "stop"))
    sv.add_argument("--force", action="store_true", help="stop even while an operation runs (it stays resumable)")
    _json_option(sv, "with status: JSON for scripts")


def _flags(sub, common) -> None:
    """flags, flag: run by controlroom.cli.flags."""
    s = sub.add_parser("flags", parents=[common], help="the flags, their values and each one's fleet receipt")
    s.add_argument("--verify", action="store_true", help="read every host's flags file back and name the drifted")
    _hosts_option(s, "with --verify or --dismiss: only these hosts")
    s.add_argument("--dismiss", action="store_true", help="stop retrying the stragglers (or --hosts)")
    _json_option(s)
    f = sub.add_parser("flag", parents=[common], help="turn a flag on or off, or to a percentage, on every host")
    f.add_argument("name", metavar="NAME").completer = _completer("flags")
    f.add_argument("value", metavar="on|off|N%").completer = _completer("flag_values")
    f.add_argument("--reason", metavar="TEXT", default="", help="why (the deploy log and the history show it)")
    f.add_argument("--yes", "-y", action="store_true", help="do not ask")
    _hosts_option(f, "only these hosts (default: all)")


def _diff(sub, common) -> None:
    """diff, stage: run by controlroom.cli.diff."""
    d = sub.add_parser("diff", parents=[common], help="what the staged revision changes: live -> staged")
    d.add_argument("--stat", action="store_true", help="commits and files only, not the diff itself")
    d.add_argument("--revision", "-r", metavar="R", help="compare with this revision (default: [release] staged)")
    _json_option(d, "the commits and files (what --stat shows) as JSON, for scripts")
    s = sub.add_parser("stage", parents=[common], help="run [release] stage for the staged revision (or R)")
    s.add_argument("--revision", "-r", metavar="R", help="revision to stage (default: [release] staged)")


def _metrics(sub, common) -> None:
    """metrics: run by controlroom.cli.metrics."""
    m = sub.add_parser("metrics", parents=[common], help="every metrics series: sparkline, value, threshold, status")
    m.add_argument("--width", type=int, default=METRICS_WIDTH, metavar="N", help=f"sparkline width (default {METRICS_WIDTH})")
    _json_option(m, "JSON for scripts: one object per series line (values, threshold, status, the history)")


def _journal(sub, common) -> None:
    """journal migrate: the journal moved to PostgreSQL (cli/journal.py)."""
    j = sub.add_parser("journal", help="the journal itself: `journal migrate` moves a SQLite journal to PostgreSQL")
    js = j.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", parser_class=_Parser, required=True)
    m = js.add_parser("migrate", help="copy STATE_DIR/journal.db into an empty PostgreSQL journal")
    m.add_argument("--from", dest="source", required=True, metavar="STATE_DIR",
                   help="the state directory whose journal.db is copied")
    m.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="postgresql://host:port/db of an empty database (the PG* variables fill what it leaves out)")


def _record(sub, common) -> None:
    """history, timeline, replay, stats: the record read back (cli/history.py, imported when one runs)."""
    h = sub.add_parser("history", parents=[common],
                       help="past deploys, rollbacks, stages and flag changes, newest first")
    h.add_argument("--since", metavar="DATE|7d", help="from a date (2026-12-01, 2026-12-01T10:00) or an age (7d, 12h)")
    h.add_argument("--user", metavar="U", help="only what this person did")
    h.add_argument("--failed", action="store_true", help="only what failed (or ended marked)")
    h.add_argument("--json", action="store_true", help="JSON for scripts")
    t = sub.add_parser("timeline", parents=[common], help="every event of one deploy with its time, person, values")
    t.add_argument("deploy", metavar="DEPLOY", help="the deploy's number as `controlroom log` names it (3, #3), or last")
    t.add_argument("--markdown", action="store_true", help="a Markdown table, for an incident report")
    t.add_argument("--json", action="store_true", help="JSON for scripts")
    r = sub.add_parser("replay", parents=[common], help="play a past deploy's record in the app, read-only")
    r.add_argument("deploy", metavar="DEPLOY", help="the deploy's number as `controlroom log` names it (3, #3), or last")
    r.add_argument("--speed", type=float, default=1.0, metavar="N",
                   help="N times the record's real pace (default 1; space pauses, +/- change it)")
    s = sub.add_parser("stats", parents=[common], help="the team's deploy figures (DORA) from the record and git")
    s.add_argument("--days", type=float, default=7, metavar="N", help="the last N days (default 7)")
    s.add_argument("--json", action="store_true", help="JSON for scripts")

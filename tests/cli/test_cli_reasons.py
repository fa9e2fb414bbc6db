"""Past an exceeded failure budget from a headless deploy on a terminal: `[s]kip` and `[p]roceed` at the halt ask
why, an empty answer goes nowhere (the question comes back, the hosts untouched), and the typed reason is what the
deploy log records, with the result marked for good. Typed on a real pty (tests/terminal.py), as the operator does."""

from __future__ import annotations

import pytest

from tests.cli.test_deploy_cli import log_lines, revisions
from tests.terminal import Terminal
from tests.unit.engine.test_rollout import BUDGET_PHASES, NEW, OLD, config_with_phases

HALT = b"[r]etry failed hosts"


def read_new(term: Terminal, text: bytes, seconds: float = 90) -> None:
    """Read until text appears in what the terminal shows from now on (a question asked again counts again)."""
    term.read_until(text, seconds, start=len(term.seen))


def on(fleet, rev: str) -> list[str]:
    return sorted(h for h, r in revisions(fleet).items() if r == rev)


@pytest.mark.parametrize(("key", "what"), [("s", b"Why skip the failed hosts?"),
                                           ("p", b"Why go on past the failure budget?")])
def test_skip_and_proceed_at_the_halt_ask_why_an_empty_answer_asks_again_and_the_reason_is_on_the_record(
        make_fleet, key, what):
    fleet = make_fleet(12, "web004=fail,web005=fail")
    cfg = str(config_with_phases(fleet, BUDGET_PHASES))
    term = Terminal(cfg, "deploy", "--yes", cwd=fleet.dir)
    try:
        term.read_until(HALT, 90)
        stage_2 = on(fleet, OLD)[-6:]
        term.type(key.encode() + b"\n")
        read_new(term, what)
        term.type(b"\n")  # no reason: nothing is skipped, the deploy stays halted and asks again
        read_new(term, HALT)
        assert on(fleet, OLD)[-6:] == stage_2
        assert not any("FORCE" in line for line in log_lines(fleet, "-c", cfg))
        term.type(key.encode() + b"\n")
        read_new(term, what)
        term.type(b"web004 and web005 are \x1b[31mbeing replaced\n")  # what a person types is only text
        code = term.proc.wait(120)
    finally:
        out = term.close()
    assert set(on(fleet, NEW)) >= set(stage_2), out  # stage 2 ran after the decision
    log = "\n".join(log_lines(fleet, "-c", cfg))
    reason = '"web004 and web005 are ^[[31mbeing replaced"'  # the escape shown as text, never sent raw
    if key == "s":
        for host in ("web004", "web005"):
            assert f"FORCE r2307 {host} skipped past the failure budget of stage 1 by mygrant" in log, log
        assert "DEPLOY OK r2307 ⚠ past a failure budget, with 2 hosts skipped: on 10 of 12 hosts, 2 skipped" in log, log
        assert code == 0
    else:
        assert "FORCE r2307 stage 1 past its failure budget by mygrant (2 failed: web004, web005; max_failed 1)" \
            in log, log
        assert "DEPLOY FAILED r2307 ⚠ past a failure budget: on 10 of 12 hosts, 2 failed" in log, log
        assert code == 1  # the two failed hosts stay failed
    assert log.count(reason) == (4 if key == "s" else 1), log  # skip: the FORCE and the SKIP of each host
    assert "\x1b" not in log

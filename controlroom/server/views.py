"""What the server tells a client beyond the board: the last deploy as the journal has it (for a server that starts
after it), the lock with its liveness, the deploy log's entries after a number, the staged and live revisions, and
one host's recent output with its last command's result, a deploy's record page by page and the history list. Plain data, ready for JSON; no Textual here.
"""

from __future__ import annotations

import asyncio

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.engine.board import Board
from controlroom.engine.history import exists_line, history_items
from controlroom.journal import record
from controlroom.journal.journal import Journal, unreached
from controlroom.journal.locks import abandons
from controlroom.server import wire
from controlroom.sources import git as release

LOG_REPLY = 500  # deploy-log entries in one reply at most (the newest)


def adopt_last(board: Board, journal: Journal) -> None:
    """Show the journal's last deploy on a fresh board: its result once it ended, else halted (no process of this
    server drives it: a server killed mid-deploy, a headless deploy that stopped). Nothing is written anywhere."""
    rec = journal.rollout()
    if rec is None:
        return
    board.apply(ev.RolloutStarted(rec.id, revision=rec.revision, previous=rec.previous, user=rec.user,
                                  phases=rec.phases, at=rec.started_at))
    runs = journal.host_runs(rec.id)
    for run in runs.values():
        board.apply(ev.HostStateChanged(rec.id, host=run.host, phase=run.phase, state=run.state, step=run.step,
                                        steps=run.steps, reason=run.reason, revision=run.revision,
                                        previous=run.previous, steps_done=run.steps_done, at=rec.started_at))
    if rec.status in ev.ROLLOUT_FINAL:
        states = [r.state for r in runs.values()]
        failed = tuple((r.host, r.reason) for r in runs.values() if r.state == ev.FAILED)
        skipped = states.count(ev.SKIPPED)
        board.apply(ev.RolloutFinished(
            rec.id, status=rec.status, revision=rec.revision,
            done=states.count(ev.ROLLED_BACK if rec.status == ev.R_ROLLED_BACK else ev.DONE),
            failed=len(failed), skipped=skipped,
            seconds=round((rec.finished_at or rec.started_at) - rec.started_at, 3), failed_hosts=failed,
            at=rec.finished_at or rec.started_at,
            # marked for good: read back from the operator actions the journal has for it, as the engine does
            marks=ev.marks_of(journal.actions(rec.id), rec.status, skipped)))
        return
    board.marks = ev.action_marks(journal.actions(rec.id))  # what it went past so far stays said
    i = min(max(rec.phase, 0), max(len(rec.phases) - 1, 0))
    name = rec.phases[i][0] if rec.phases else "?"
    failed_names = tuple(r.host for r in runs.values() if r.state == ev.FAILED)
    board.apply(ev.PhaseHalted(rec.id, phase=i, name=name, failed=failed_names, max_failed=0, at=rec.started_at))
    board.phase_index = i


def lock_of(journal: Journal | None) -> wire.Lock | None:
    """The lock as the journal has it, its liveness as seen here and the server's words for it (wire.Lock)."""
    lock = journal.lock() if journal is not None else None
    if lock is None:
        return None
    return wire.Lock(user=lock.user, at=lock.at, reason=lock.reason, pid=lock.pid, hostname=lock.hostname,
                     rollout_id=lock.rollout_id, origin=lock.origin, stale=lock.stale, live=lock.live,
                     said=lock.describe(), gives_up=abandons(lock),
                     elsewhere=lock.live and journal.shared and not journal.store.fleet_holds_here())


def journal_reply(journal: Journal, since: int) -> dict:
    """The lock and the deploy-log entries after id ``since`` (the newest LOG_REPLY), oldest first."""
    lock = lock_of(journal)
    return {"lock": None if lock is None else lock.to_wire(),
            "log": [wire.log_entry(e) for e in journal.log(LOG_REPLY) if e.id > since]}


async def revisions(cfg, journal: Journal, pool) -> dict:
    """The staged revision (git) and what the fleet runs: the revision most hosts run, by the journal's record
    for the hosts a deploy reached and by asking one host for the inventory's hosts none has reached yet (the
    middle of a first deploy: its 2 canary hosts are not the fleet). ``unreached`` is that answer, what the hosts
    without a record count as. What cannot be known comes back as a one-line reason instead."""
    out = wire.revisions()
    try:
        out["staged"] = await asyncio.to_thread(release.staged_revision, cfg)
    except ControlroomError as e:
        out["staged_error"] = str(e)
    recorded = journal.live_revisions()
    values = [live for live, _ in recorded.values() if live]
    missing = unreached(recorded, cfg.hosts)
    if missing and pool is not None:
        todo = set(missing)
        first = [h for phase in cfg.phases for h in phase.hosts if h in todo][:1] or missing[:1]  # canary first
        try:
            res = await pool.run(first[0], cfg.release.live_command, timeout=cfg.deploy.step_timeout)
        except ControlroomError as e:
            out["live_error"] = str(e)
        else:
            last = res.stdout.strip().rsplit("\n", 1)[-1].strip() if res.ok and res.stdout.strip() else ""
            if last and last != "none":
                out["unreached"] = last
                values += [last] * len(missing)
            if not res.ok:
                out["live_error"] = f"{first[0]}: {res.label} {res.reason}".strip()
    if values:
        out["live"] = max(set(values), key=values.count)
    return out


def host_output(rollout, host: str, seq: int) -> dict:
    """One host's recent output as the engine keeps it ("$ command" lines included) and its last command."""
    hr = rollout.hosts.get(host) if rollout is not None else None
    if hr is None:
        return wire.host_output(host=host, lines=[], revision=None, previous=None, result=None, seq=seq)
    res = hr.result
    return wire.host_output(host=host, lines=list(hr.output), revision=hr.revision, previous=hr.previous, seq=seq,
                            result=None if res is None else {"label": res.label, "connect_s": res.connect_s,
                                                             "run_s": res.run_s})


def rollback_plan(rollout) -> dict:
    """What a rollback of this rollout would reach: every host that may run its code, and how many are not done."""
    targets = rollout.rollback_targets()
    return wire.rollback_plan(rollout_id=rollout.id, revision=rollout.revision, previous=rollout.previous,
                              hosts=len(targets), others=sum(h.state != ev.DONE for h in targets))


def figures_line(journal_path, cfg) -> dict:
    """The talk's line from the record ("In the last 7 days: 67 deploys of 496 changes by 18 people",
    engine/figures.py): {"line": str, "days": 7}. Runs git, so a server calls it in a thread (figures.of_week)."""
    from controlroom.engine import figures

    return {"line": figures.of_week(journal_path, cfg).line(), "days": figures.WEEK}


def record_page(journal: Journal, cfg, number: int | None, after: int, limit: int, live_id: int | None) -> dict:
    """One page of deploy ``number``'s record (the latest deploy when None) after event id ``after``: at most
    ``limit`` events (wire.RECORD_PAGE) and about wire.RECORD_BYTES of their data, read through the journal's
    index; on the first page, every flag's value when the deploy began (config defaults, then the flag
    history). UsageError naming the deploys that exist for one that does not."""
    db = journal.db
    row = record.deploy(db, number)
    if row is None:
        numbers = record.deploy_numbers(db)
        if number is None or not numbers:
            raise UsageError("there is no deploy in the record yet")
        raise UsageError(f"there is no deploy #{number}; {exists_line(numbers)}")
    limit = min(max(limit, 1), wire.RECORD_PAGE)
    rows = record.deploy_events_page(db, row.id, after_id=max(after, 0), limit=limit)
    more = len(rows) >= limit
    size = 0
    for k, r in enumerate(rows):
        size += len(r[3])
        if size > wire.RECORD_BYTES and k:
            rows, more = rows[:k], True
            break
    flags = None
    if after <= 0:
        began = rows[0][1] if rows else row.started_at
        flags = {f.name: str(f.default) for f in cfg.flags.flags}
        flags.update({str(k): str(v) for k, v in record.flags_at(db, began)[1].items()})
    deploy = {"id": row.id, "revision": row.revision, "previous": row.previous, "user": row.user,
              "status": row.status, "started_at": row.started_at, "finished_at": row.finished_at}
    return wire.record_page(deploy=deploy, live=live_id == row.id, flags=flags,
                            events=[list(r) for r in rows],  # data as the journal keeps it: JSON text
                            last=rows[-1][0] if rows else max(after, 0), more=more)


def history_reply(journal: Journal, since: int | None, limit: int) -> dict:
    """The history list, newest first, at most ``limit`` (wire.HISTORY_MAX) items."""
    items = history_items(journal.db, since=float(since) if since is not None else None)
    return wire.history(items[:min(max(limit, 1), wire.HISTORY_MAX)])

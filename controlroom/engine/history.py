"""The record's list of what happened to the fleet: deploys, rollbacks, stages and flag changes (who, when, what,
result, how long), newest first, as `controlroom history` prints it and the server's ``history`` read answers
the app. Read from the journal (journal/record.py); plain data, no Textual here.
"""

from __future__ import annotations

from controlroom.core import events as ev
from controlroom.journal import record


def history_items(db, *, since: float | None = None, user: str | None = None, failed: bool = False) -> list[dict]:
    """Deploys, rollbacks, stages and flag changes, newest first: kind, id, at, user, what, result, ok, seconds."""
    items: list[dict] = []
    rows = record.deploys(db, since=since)
    evs = record.events_of(db, [r.id for r in rows], ("RolloutFinished", "OperatorAction", "PhaseHalted"))
    for r in rows:
        fin = [e.decoded() for e in evs[r.id] if e.type == "RolloutFinished"]
        own = next((f for f in fin if f.get("status") != ev.R_ROLLED_BACK), None)
        if own is not None:
            marks = tuple(own.get("marks") or ())
            result = ev.outcome(ev.RolloutFinished(0, status=own["status"], revision=r.revision, done=own["done"],
                                                   failed=own["failed"], skipped=own["skipped"],
                                                   seconds=own["seconds"], marks=marks))
            ok = own["status"] == ev.R_DONE and not marks
            seconds = own.get("seconds")
        else:  # it never ended by itself: halted (then maybe rolled back), or still under way
            halts = [e.decoded() for e in evs[r.id] if e.type == "PhaseHalted"]
            seconds = None
            if halts:
                result, ok = f"DEPLOY HALTED at {halts[-1].get('name')}", False
            elif r.status == ev.R_ROLLED_BACK:
                result, ok = "rolled back before it ended", False
            else:
                result, ok = r.status, None
        items.append({"kind": "deploy", "id": r.id, "at": r.started_at, "user": r.user,
                      "what": f"deploy #{r.id} {r.previous or '?'} -> {r.revision}", "result": result, "ok": ok,
                      "seconds": seconds})
        starts = [e for e in evs[r.id] if e.type == "OperatorAction" and e.decoded().get("action") == "rollback"]
        backs = [(e.at, e.decoded()) for e in evs[r.id] if e.type == "RolloutFinished"
                 and e.decoded().get("status") == ev.R_ROLLED_BACK]
        for s in starts:
            d = s.decoded()
            end = next(((at, b) for at, b in backs if at >= s.at), None)
            if end is None:
                result, ok, seconds = "underway or stopped", None, None
            else:
                b = end[1]
                ok = not b.get("failed")
                result = f"ROLLBACK DONE on {b.get('done')} hosts" + ("" if ok else f", {b.get('failed')} failed")
                seconds = b.get("seconds")
            items.append({"kind": "rollback", "id": r.id, "at": s.at, "user": d.get("user") or "",
                          "what": f"rollback of deploy #{r.id} ({r.revision} -> {r.previous or 'previous'})",
                          "result": result, "ok": ok, "seconds": seconds})
    for s in record.stages(db, since=since):
        items.append({"kind": "stage", "id": s["id"], "at": s["at"], "user": s["user"],
                      "what": f"stage {s['revision']}" + (f" ({s['commit_hash'][:12]})" if s["commit_hash"] else ""),
                      "result": "STAGE OK" if s["ok"] else f"STAGE FAILED: {s['reason']}", "ok": bool(s["ok"]),
                      "seconds": s["seconds"]})
    for f in record.flag_changes(db, since=since):
        if f["failed"] is None:
            result, ok = "pushing", None
        elif f["failed"]:
            result, ok = f"confirmed {f['confirmed']}/{f['hosts']}, {len(f['failed'])} not", False
        else:
            result, ok = f"confirmed {f['confirmed']}/{f['hosts']}", True
        items.append({"kind": "flag", "id": f["version"], "at": f["at"], "user": f["user"],
                      "what": f"flag {f['flag']} {f['old']} -> {f['new']}" + (f": {f['reason']}" if f["reason"] else ""), "result": result,
                      "ok": ok, "seconds": None})
    if user:
        items = [i for i in items if i["user"] == user]
    if failed:
        items = [i for i in items if i["ok"] is False]
    items.sort(key=lambda i: (i["at"], i["kind"]), reverse=True)
    return items


def exists_line(numbers: list[int]) -> str:
    if not numbers:
        return "the record has no deploys yet"
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    parts = [f"#{a}" if a == b else f"#{a}-#{b}" for a, b in runs]
    return "the record has " + ", ".join(parts[:10]) + (", ..." if len(parts) > 10 else "")

"""Every message on the control-room socket, in one place: what a client may ask (REQUESTS, with the type of each
field), what the server answers (a reply or a refusal), and what it sends unasked (the snapshot, the numbered
events, presence, notices, an operation's end, a stage's output). protocol.py frames them (one JSON object a line);
this module says what is in them. The JSON field names are the protocol's: a change here is a change of VERSION.

A reply is ``{"id": N, "ok": true, ...}`` or a refusal ``{"id": N, "ok": false, "error": line, "exit": code}``;
the fields of the server's own replies are made here (started, status, host_output, rollback_plan, revisions, the
``journal`` reply's lock and log_entry, a deploy's ``record`` page and the ``history`` list); the flag replies are the flag service's (engine.flagpush). Unasked, the
server sends:
    hello          its answer to the client's hello (ok, version, pid, user, may_act, warning, client_no), or a
                   refusal (ok false, error, maybe exit) after which it closes
    snapshot       seq, board, lock, log, busy, engine_status, policy, presence, driver
    event          seq, event (core.events.to_wire)
    presence       presence (one entry a client: no, user, origin, client, role), driver
    notice         line (the server's config was reloaded, or could not be)
    ended          no, name, rollout_id, error, exit (an operation ended: how)
    stage_output   line (to the client that asked for the stage, before the reply)

The Lock is one shape wherever it travels (the snapshot, the ``journal`` reply): every field of the journal's
lock row, its liveness as the server sees it, and the server's words for it (``describe``: who holds it and why;
``abandons``: what releasing it gives up), so a client shows what the server says and never recomputes it.

Plain data: it imports only the stdlib, core.errors and protocol.VERSION (every client imports this module, so it
costs what they already pay).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlroom.core.errors import UsageError
from controlroom.server.protocol import VERSION


# ----------------------------------------------------------------------------------------------------- requests
def client_hello(*, read_only: bool, client: str) -> dict:
    """A client's first line: its version, whether it only watches, what it is (app, cli, web: presence)."""
    return {"op": "hello", "version": VERSION, "read_only": read_only, "client": client}


def request(rid: int, op: str, fields: dict) -> dict:
    """One request; its reply carries the same id."""
    return {"id": rid, "op": op, **fields}


_STR, _INT, _BOOL, _STRS = (str,), (int,), (bool,), (list,)
_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list of strings"}
# op -> {field: (types, required)}; None is always allowed for a field that is not required
REQUESTS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "hello": {"version": (_INT, True), "read_only": (_BOOL, False)},  # "client": presence.kind_of reads it
    "attach": {"since": (_INT, False)},
    "status": {}, "revisions": {}, "rollback_plan": {}, "flags": {}, "park": {},
    "pause": {}, "unpause": {}, "abort": {}, "interrupt": {}, "proceed": {"reason": (_STR, False)},
    "output": {"host": (_STR, True)},
    "journal": {"since": (_INT, False)},
    "flag_history": {"flag": (_STR, False), "limit": (_INT, False)},
    "flags_verify": {"hosts": (_STRS, False)},
    "metrics": {"points": (_INT, False)},
    "deploy": {"revision": (_STR, False), "policy": (_STR, False), "confirm": (_STR, False),
               "force_reason": (_STR, False), "config": (_STR, False)},
    "resume": {"policy": (_STR, False), "config": (_STR, False)},
    "rollback": {"config": (_STR, False)},
    "stage": {"revision": (_STR, False), "config": (_STR, False)},
    "retry": {"host": (_STR, True)},
    "skip": {"host": (_STR, True), "reason": (_STR, False)},
    "lock": {"message": (_STR, True), "takeover": (_BOOL, False)},
    "unlock": {"force": (_BOOL, False)},
    "log_add": {"message": (_STR, True)},
    "stop": {"force": (_BOOL, False)},
    "flag_set": {"flag": (_STR, True), "value": ((str, bool, int), True), "reason": (_STR, False),
                 "hosts": (_STRS, False), "expect": (_INT, False)},
    "flag_dismiss": {"hosts": (_STRS, False)},
    "gate_check": {"quiet": (_BOOL, False)},
    "record": {"deploy": (_INT, False), "after": (_INT, False), "limit": (_INT, False)},
    "history": {"since": (_INT, False), "limit": (_INT, False)},
    "figures": {},
}


class BadRequest(UsageError):
    """A request whose fields are not what its op takes: the answer names the field."""


def check_request(msg: dict) -> None:
    """Raise BadRequest naming the first field of msg that its op does not take as it is. Fields the op does not
    know are left alone (a newer client may send more); an op not in REQUESTS is the caller's to refuse."""
    op = msg.get("op")
    rid = msg.get("id")
    if rid is not None and (type(rid) is bool or not isinstance(rid, (int, str))):
        raise BadRequest("field 'id' must be a number or a string")
    if not isinstance(op, str) or op not in REQUESTS:
        return
    for name, (types, required) in REQUESTS[op].items():
        value = msg.get(name)
        if value is None:
            if required:
                raise BadRequest(f"{op}: field {name!r} is missing")
            continue
        ok = isinstance(value, types) and not (type(value) is bool and bool not in types)
        if ok and types is _STRS:
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            want = " or ".join(_NAMES[t] for t in types)
            raise BadRequest(f"{op}: field {name!r} must be {want}, not {type(value).__name__}")


def request_id(msg: dict) -> int | str | None:
    """The id a reply can carry back: a number or a string, else None."""
    rid = msg.get("id")
    return None if rid is None or type(rid) is bool or not isinstance(rid, (int, str)) else rid


# ----------------------------------------------------------------------------------------------------- replies
def reply(rid: int | str | None, fields: dict | None = None, notices: list[str] | None = None) -> dict:
    """A request done: its fields, and what the server said about its config before it (``notice``)."""
    return {"id": rid, "ok": True, **(fields or {}), **({"notice": notices} if notices else {})}


def refusal(rid: int | str | None, error: str, exit: int, *, driven: bool = False) -> dict:
    """A request refused in one line, with the exit code a CLI ends with. ``driven``: another person drives what
    it acts on; the client may ask its person and send it again with ``anyway``."""
    return {"id": rid, "ok": False, "error": error, "exit": exit, **({"driven": True} if driven else {})}


def hello(*, pid: int, user: str, may_act: bool, warning: str | None, client_no: int) -> dict:
    return {"op": "hello", "ok": True, "version": VERSION, "pid": pid, "user": user, "may_act": may_act,
            "warning": warning, "client_no": client_no}


def hello_refused(error: str, exit: int | None = None) -> dict:
    """The server's hello when it will not talk to this connection (it closes after it)."""
    return {"op": "hello", "ok": False, "version": VERSION, "error": error, **({"exit": exit} if exit else {})}


def started(*, rollout_id: int, revision: str, op: int, seq: int, hosts: dict[str, list]) -> dict:
    """The reply to an intent that started an operation: its number, and every host as ``[phase, steps_done,
    state]`` at event number seq (a follower applies the events after it)."""
    return {"rollout_id": rollout_id, "revision": revision, "op": op, "seq": seq, "hosts": hosts}


def status(*, pid: int, clients: int, connections: int, max_connections: int, busy: str, seq: int, since: float,
           status: str | None, rollout_id: int | None, config: str, channels: list[str], notes: list[str]) -> dict:
    """`server status`: the server's pid, who is attached, what runs, its config and what was said about it."""
    return {"pid": pid, "clients": clients, "connections": connections, "max_connections": max_connections,
            "busy": busy, "seq": seq, "since": since, "status": status, "rollout_id": rollout_id, "config": config,
            "channels": channels, "notes": notes}


def host_output(*, host: str, lines: list[str], revision: str | None, previous: str | None,
                result: dict | None, seq: int) -> dict:
    """One host's recent output and its last command's result (label, connect_s, run_s); the events up to seq
    are in it (a client follows with the HostOutput after it)."""
    return {"host": host, "lines": lines, "result": result, "revision": revision, "previous": previous, "seq": seq}


def rollback_plan(*, rollout_id: int, revision: str, previous: str | None, hosts: int, others: int) -> dict:
    """What a rollback would reach: every host that may run the deploy's code, and how many are not done."""
    return {"rollout_id": rollout_id, "revision": revision, "previous": previous, "hosts": hosts, "others": others}


def revisions() -> dict:
    """The staged and the live revision, what hosts no deploy reached run, and why what is None is not known."""
    return {"staged": None, "live": None, "unreached": None, "staged_error": None, "live_error": None}


RECORD_PAGE = 2000  # events in one ``record`` reply at most
RECORD_BYTES = 1 << 20  # and about this much of their data (a reply stays far under protocol.MAX_LINE)
HISTORY_MAX = 500  # items in one ``history`` reply at most (the newest)


def record_page(*, deploy: dict, live: bool, flags: dict[str, str] | None, events: list[list], last: int,
                more: bool) -> dict:
    """One page of a deploy's record, for a timeline (the ``record`` read): the deploy (id, revision, previous,
    user, status, started_at, finished_at), whether this server drives it now, every flag's value when it began
    (on the first page only, after 0), its events as ``[id, at, type, data]`` in the journal's order (at most
    RECORD_PAGE; data is the event's JSON text as the journal keeps it, an object once decoded: the server
    neither decodes nor encodes it again, and the reader decodes a page in one go), the id to ask after for the
    next page (``last``) and whether there is more now."""
    return {"deploy": deploy, "live": live, "flags": flags, "events": events, "last": last, "more": more}


def history(items: list[dict]) -> dict:
    """The ``history`` read: deploys, rollbacks, stages and flag changes, newest first, each with kind, id, at,
    user, what, result, ok (true, false, or null while under way) and seconds (engine.history.history_items)."""
    return {"items": items}


# ----------------------------------------------------------------------------------------------------- the Lock
@dataclass(frozen=True)
class Lock:
    """The fleet's lock as a client sees it: the journal's row, its liveness and the server's words for it."""

    user: str
    at: float
    reason: str
    pid: int | None = None
    hostname: str | None = None
    rollout_id: int | None = None
    origin: str | None = None
    stale: bool = False
    live: bool = False  # held by a deploy process that runs now
    said: str = ""  # who holds it and why, as the server words it (wire: "describe")
    gives_up: str = ""  # what releasing it abandons, as the server words it (wire: "abandons")
    elsewhere: bool = False  # live, and driven by another bastion's server on a shared journal (on the wire only
    # when true: a SQLite journal's lock keeps its names)

    @property
    def parked(self) -> bool:
        """A deploy's lock kept while the deploy waits for a decision with no process driving it."""
        return bool(self.rollout_id) and not self.pid

    def describe(self) -> str:
        return self.said

    def to_wire(self) -> dict:
        return {"user": self.user, "at": self.at, "reason": self.reason, "pid": self.pid, "hostname": self.hostname,
                "rollout_id": self.rollout_id, "origin": self.origin, "stale": self.stale, "live": self.live,
                "describe": self.said, "abandons": self.gives_up, **({"elsewhere": True} if self.elsewhere else {})}

    @classmethod
    def from_wire(cls, d: dict | None) -> Lock | None:
        if not d:
            return None
        return cls(user=str(d.get("user", "")), at=float(d.get("at") or 0), reason=str(d.get("reason", "")),
                   pid=d.get("pid"), hostname=d.get("hostname"), rollout_id=d.get("rollout_id"),
                   origin=d.get("origin"), stale=bool(d.get("stale")), live=bool(d.get("live")),
                   said=str(d.get("describe") or ""), gives_up=str(d.get("abandons") or ""),
                   elsewhere=bool(d.get("elsewhere")))


def abandons(lock: Lock) -> str:
    """What releasing this lock gives up, in the server's words."""
    return lock.gives_up


# ----------------------------------------------------------------------------------------------------- unasked
def log_entry(e) -> dict:
    """One deploy-log entry (journal.LogEntry) as the ``journal`` reply carries it."""
    return {"id": e.id, "at": e.at, "user": e.user, "kind": e.kind, "text": e.text, "revision": e.revision,
            "origin": e.origin}


def snapshot(*, seq: int, board: dict, lock: Lock | None, log: list[str], busy: str, engine_status: str | None,
             policy: str | None, presence: dict) -> dict:
    """Everything a client needs to show the server as it stands at event number seq; ``presence`` is the
    presence message's fields (presence, driver)."""
    return {"op": "snapshot", "seq": seq, "board": board, "lock": None if lock is None else lock.to_wire(),
            "log": log, "busy": busy, "engine_status": engine_status, "policy": policy, **presence}


def event(seq: int, event: dict, event_id: int | None = None) -> dict:
    """Event number seq (this server's stream); ``event`` as core.events.to_wire gives it. On a shared journal a
    journaled event has ``event_id`` too: its number in the journal, the same from every bastion's server (not
    ``id``: that is a request's, which its reply carries)."""
    msg = {"op": "event", "seq": seq, "event": event}
    if event_id is not None:
        msg["event_id"] = event_id
    return msg


def present(*, no: int, user: str, origin: str | None, client: str, role: str | None = None) -> dict:
    """One attached client in the presence list (role "driving" or "watching"), or the driver (no role)."""
    return {"no": no, "user": user, "origin": origin, "client": client, **({"role": role} if role else {})}


def presence(listed: list[dict], driver: dict | None) -> dict:
    return {"op": "presence", "presence": listed, "driver": driver}


def notice(line: str) -> dict:
    return {"op": "notice", "line": line}


def ended(*, no: int, name: str, rollout_id: int, error: str | None, exit: int) -> dict:
    """An operation ended (after the events it caused): ``error`` is its one line, None when it went through."""
    return {"op": "ended", "no": no, "name": name, "rollout_id": rollout_id, "error": error, "exit": exit}


def stage_output(line: str) -> dict:
    return {"op": "stage_output", "line": line}


"""`--json` for scripts, run as a script runs it (a subprocess on the simulated fleet over real SSH): every line of
stdout parses with json.loads, carries the fields the README's "Output for scripts" documents, and says what the
text form of the same command says."""

from __future__ import annotations

import datetime as dt
import json
import re

from controlroom.demo.fleet import Fleet
from tests.cli.test_deploy_cli import cr
from tests.waiting import wait_for

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def objects(stdout: str) -> list[dict]:
    """Every line one JSON object (and nothing else on stdout)."""
    lines = stdout.splitlines()
    assert lines, "no output"
    out = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in out)
    return out


def the_one(stdout: str) -> dict:
    [obj] = objects(stdout)
    return obj


def same_time(obj: dict, name: str = "") -> None:
    """A time is <name>_at (epoch seconds) and <name>_time (ISO 8601 UTC), the same moment."""
    at, iso = obj[f"{name}_at" if name else "at"], obj[f"{name}_time" if name else "time"]
    assert isinstance(at, float) and ISO.match(iso), (at, iso)
    assert dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() == int(at)


def ok(res):
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_check_and_run(fleet: Fleet):
    text = ok(cr(fleet, "check")).stdout.splitlines()
    c = the_one(ok(cr(fleet, "check", "--json")).stdout)
    assert c["ok"] is True and c["path"] == text[0].removesuffix(": ok")
    assert f"hosts: {len(c['hosts'])}" in text and [h["name"] for h in c["hosts"]] == [h.name for h in fleet.hosts]
    assert all(set(h) == {"name", "address", "port", "user", "group", "colo", "origins"} for h in c["hosts"])
    toml = str(fleet.config_path)  # every host is written in the config: where, file:line, as `from:` says
    assert all(len(h["origins"]) == 1 and h["origins"][0].startswith(f"{toml}:") for h in c["hosts"])
    where = c["hosts"][0]["origins"][0].removeprefix(str(fleet.dir) + "/")
    assert re.search(rf"^  .*\b{re.escape(where)}$", "\n".join(text), re.M), text
    phases = [line.split()[:2] for line in text[text.index(f"phases: {len(c['phases'])}") + 1:] if line.startswith("  ")]
    for ph in c["phases"]:  # the text's "  canary    2 hosts ..." for each phase, in order
        words = ph["name"].split()
        assert any(p[:len(words)] == words or " ".join(p) .startswith(ph["name"]) for p in phases)
        assert re.search(rf"^  {re.escape(ph['name'])}\s+{len(ph['hosts'])} hosts", "\n".join(text), re.M)
    assert f"flags: {len(c['flags'])}" in text
    assert {f["name"] for f in c["flags"]} <= {line.split()[0] for line in text if line.startswith("  ")}
    assert f"state: {c['state_dir']}" in text
    assert set(c["notify"]) == {"webhook", "webhook_env", "irker", "command"}

    # run: one object per host as it finishes, then the summary; the output raw (the escape is JSON-escaped)
    text = ok(cr(fleet, "run", r"printf 'a\033[31mb'")).stdout
    assert "\x1b" not in text  # the terminal's form shows it, never sends it
    res = ok(cr(fleet, "run", r"printf 'a\033[31mb'", "--json"))
    assert "\x1b" not in res.stdout and "\\u001b" in res.stdout
    *hosts, summary = objects(res.stdout)
    assert sorted(h["host"] for h in hosts) == [h.name for h in fleet.hosts]
    for h in hosts:
        assert h["ok"] is True and h["result"] == "ok" and h["exit_code"] == 0 and h["reason"] is None
        assert h["stdout"] == "a\x1b[31mb" and h["stderr"] == ""
        assert h["connect_seconds"] >= 0 and h["run_seconds"] >= 0
        same_time(h, "started")
    assert summary["summary"] is True and summary["hosts"] == 10 and summary["ok"] == 10
    assert summary["results"] == {"ok": 10}
    assert re.search(r"^10 hosts: 10 ok \(", text, re.M)
    res = cr(fleet, "run", "--hosts", "web00[1:2]", "echo out; echo err >&2; exit 3", "--json")
    assert res.returncode == 1
    *hosts, summary = objects(res.stdout)
    assert [(h["ok"], h["result"], h["exit_code"], h["stdout"], h["stderr"]) for h in hosts] == \
        [(False, "exit 3", 3, "out", "err")] * 2
    assert summary["results"] == {"exit 3": 2} and summary["ok"] == 0


def test_deploy_streams_its_events_and_the_reads_after_it_agree_with_their_text(fleet: Fleet):
    stat = ok(cr(fleet, "diff", "--stat")).stdout
    d = the_one(ok(cr(fleet, "diff", "--stat", "--json")).stdout)
    assert d["live"] == "r2306" and d["staged"] == "r2307" and d["same"] is False and d["problem"] is None
    assert d["live_line"] in stat and f"staged: r2307 ({d['staged_commit'][:10]})" in stat
    assert f"{len(d['commits'])} commit" in stat and d["commits"]
    for c in d["commits"]:
        assert re.search(rf"^  {c['hash']}  {re.escape(c['author'])}  .*  {re.escape(c['subject'])}$", stat, re.M)
        same_time(c)
    assert f"{len(d['files'])} files changed, +{d['added']} -{d['removed']}" in stat
    for f in d["files"]:
        assert f"  +{f['added']} -{f['removed']}  {f['path']}" in stat

    res = ok(cr(fleet, "deploy", "--yes", "--json"))
    events = objects(res.stdout)  # only events on stdout: every other line went to stderr
    for e in events:
        assert isinstance(e["event"], str) and isinstance(e["rollout_id"], int)
        same_time(e)
    kinds = [e["event"] for e in events]
    assert kinds.count("RolloutFinished") == 1 and "RolloutStarted" in kinds
    started = next(e for e in events if e["event"] == "RolloutStarted")
    assert (started["revision"], started["previous"]) == ("r2307", "r2306")
    assert sum(len(hosts) for _, hosts in started["phases"]) == 10
    end = events[kinds.index("RolloutFinished")]
    assert events[-1]["event"] == "LockChanged" and events[-1]["held"] is False  # then the lock is let go
    assert (end["status"], end["done"], end["failed"], end["revision"]) == ("done", 10, 0, "r2307")
    done = {e["host"] for e in events if e["event"] == "HostStateChanged" and e["state"] == "done"}
    assert done == {h.name for h in fleet.hosts}
    assert [e["name"] for e in events if e["event"] == "PhaseCompleted"] == \
        [p["name"] for p in the_one(ok(cr(fleet, "check", "--json")).stdout)["phases"]]

    # log: one entry a line, the same entries as the text, the deploy's LogEntryAdded among them
    text = ok(cr(fleet, "log", "-n", "5")).stdout.splitlines()
    entries = objects(ok(cr(fleet, "log", "-n", "5", "--json")).stdout)
    assert "lock" not in entries[0]  # the deploy is over: nothing holds the fleet
    assert len(entries) == len(text)
    for e, line in zip(entries, text, strict=True):
        assert set(e) == {"id", "at", "time", "user", "origin", "kind", "revision", "text"}
        same_time(e)
        assert f"[{e['user']}] {e['kind']}" in line and line.endswith(e["text"])
    logged = [(e["kind"], e["text"]) for e in events if e["event"] == "LogEntryAdded"]
    assert ("DEPLOY START", "r2306 -> r2307 to 10 hosts in 3 phases") in logged
    assert entries[-1]["kind"] == "DEPLOY OK" and entries[-1]["revision"] == "r2307"

    # the fleet runs the staged revision now
    d = the_one(ok(cr(fleet, "diff", "--stat", "--json")).stdout)
    assert d["same"] is True and d["live_hosts"] == {"r2307": 10} and d["commits"] == [] and d["files"] == []
    assert "nothing to show: the fleet runs the staged commit" in ok(cr(fleet, "diff", "--stat")).stdout

    # the server that ran it
    text = ok(cr(fleet, "server", "status")).stdout
    st = the_one(ok(cr(fleet, "server", "status", "--json")).stdout)
    assert st["running"] is True and f"server pid {st['pid']} since " in text
    assert st["busy"] is None and st["rollout_id"] == 1 and st["status"] == "done"
    same_time(st, "since")
    assert f"config: {st['config']}" in text

    # flags: the table's rows
    text = ok(cr(fleet, "flags")).stdout
    fl = the_one(ok(cr(fleet, "flags", "--json")).stdout)
    assert f"flags: version {fl['version']} of {fl['file']} on {fl['hosts']} hosts" in text
    for row in fl["flags"]:
        assert re.search(rf"^  {row['name']}\s+(kill switch|feature)\s+{re.escape(row['value'])}\s", text, re.M)
        assert set(row) == {"name", "kind", "value", "receipt", "changed_by", "changed_at", "changed_time", "reason"}

    # a locked fleet: the lock is log --json's first line, as it is the text's
    ok(cr(fleet, "lock", "db", "migration\x1b[2J"))
    text = ok(cr(fleet, "log", "-n", "1")).stdout.splitlines()
    lock, entry = objects(ok(cr(fleet, "log", "-n", "1", "--json")).stdout)
    assert lock["lock"]["reason"] == "db migration\x1b[2J"  # raw, as typed (JSON escapes it)
    assert lock["lock"]["user"] == "mygrant" and lock["lock"]["rollout_id"] is None and lock["lock"]["stale"] is False
    same_time(lock["lock"])
    assert text[0].startswith("NO DEPLOY PLEASE — mygrant") and "\x1b" not in text[0]
    assert entry["kind"] == "LOCK" and text[1].endswith(entry["text"].replace("\x1b", "^["))


def test_metrics(metrics_fleet: Fleet):
    fleet = metrics_fleet

    def settled():  # the fleet's first rate needs two samples: read once every series has a value
        out = ok(cr(fleet, "metrics")).stdout
        return out if "unknown" not in out else None

    text = wait_for(settled, 60, "every series answered", every=0.5).splitlines()
    lines = objects(ok(cr(fleet, "metrics", "--json", "--width", "10")).stdout)
    assert len(lines) == len(text)
    for m, row in zip(lines, text, strict=True):
        name = f"{m['name']}{{{m['line']}}}" if m["line"] else m["name"]
        assert row.startswith(name + " ")
        assert m["status"] in ("ok", "breach", "unknown")
        assert row.endswith({"ok": "ok", "breach": "BREACH"}.get(m["status"], m["reason"] or "")), (m, row)
        assert m["max"] is not None and isinstance(m["warnings"], list)
        assert isinstance(m["value"], float) and 1 <= len(m["points"]) <= 10
        for p in m["points"]:
            same_time(p)
    assert [m["status"] for m in lines] == ["ok"] * len(lines)  # r2306 is healthy


def test_a_series_without_a_number_is_unknown_with_its_reason():
    from controlroom.cli.metrics import json_lines

    snap = {"series": [
        {"name": "errors_5xx", "unit": "%", "max": 5.0, "min": None, "split": None, "error": "connection refused",
         "warnings": [], "lines": {}},
        {"name": "latency_ms", "unit": "ms", "max": 400.0, "min": None, "split": "revision", "error": None,
         "warnings": ["partial answer"], "lines": {"r2306": {"value": None, "points": [[1.0, None]]},
                                                   "r2307": {"value": 500.0, "points": [[1.0, 500.0]]}}}]}
    down, gap, high = json_lines(snap)
    assert (down["status"], down["reason"], down["value"], down["line"]) == ("unknown", "connection refused", None,
                                                                            None)
    assert (gap["status"], gap["value"], gap["line"]) == ("unknown", None, "r2306")
    assert (high["status"], high["value"], high["warnings"]) == ("breach", 500.0, ["partial answer"])
    assert high["points"] == [{"at": 1.0, "time": "1970-01-01T00:00:01Z", "value": 500.0}]
    json.dumps([down, gap, high], allow_nan=False)


def test_errors_are_json_too(fleet: Fleet):
    bad = fleet.dir / "bad.toml"
    bad.write_text("[inventory]\nhosts = []\n[deploy]\nsteps = 3\n")
    res = cr(fleet, "check", "--json", "-c", str(bad))
    assert res.returncode == 2 and res.stderr.startswith("controlroom: ")
    c = the_one(res.stdout)
    assert c["ok"] is False and c["error_count"] == len(c["errors"]) == len(res.stderr.splitlines())
    res = cr(fleet, "server", "status", "--json")  # no server runs for this state directory
    assert res.returncode == 1
    st = the_one(res.stdout)
    assert st["running"] is False and st["reason"]

"""The team's figures from its own record: the talk's line and the DORA four, from the journal and the repository.

"In the last 7 days: 67 deploys of 496 changes by 18 people", then

- deploys per day: deploys started in the window (not those that lost the race for the lock) / its days;
- lead time for changes: for every commit a deploy shipped (``git log previous..revision``), from its commit time
  to the time the last host of that deploy ran it (its latest move to done); the median and the p90 (nearest
  rank) over every such commit;
- change failure rate: deploys rolled back, halted for good (failed, aborted, or left halted while a later deploy
  started), or that needed a kill switch (one of the config's kill switches turned off while the deploy ran),
  over all deploys;
- time to restore: for each failed deploy, from its failure (the first gate that did not hold, phase halted, or
  failed end; for a deploy that looked fine, the rollback's start) to the rollback done or the gate holding again;
  the median.

Where the data is missing a figure says ``unknown: why``, never 0.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.journal import record

DAY = 86400.0
WEEK = 7  # days: the talk's line in the deploy log's title and the server's DORA gauges
_TYPES = ("RolloutFinished", "GateWaiting", "PhaseHalted", "GatePassed", "OperatorAction")


@dataclass(frozen=True)
class Commit:
    sha: str
    at: float
    author: str


@dataclass
class DeployFigures:
    """What one deploy adds to the figures."""

    id: int
    user: str
    started_at: float
    commits: list[Commit] | None = None  # None: unknown (why says why)
    why: str = ""
    shipped_at: float | None = None  # the last host ran it
    failed: list[str] = field(default_factory=list)  # why it counts as a change failure: rolled back, halted, ...
    failure_at: float | None = None
    restored_at: float | None = None


@dataclass
class Figures:
    days: float
    since: float
    deploys: list[DeployFigures]

    # ----------------------------------------------------------------------------------------- the figures
    @property
    def changes(self) -> int:
        return sum(len(d.commits) for d in self.deploys if d.commits is not None)

    @property
    def unknown_changes(self) -> list[DeployFigures]:
        return [d for d in self.deploys if d.commits is None]

    @property
    def people(self) -> int:
        return len({d.user for d in self.deploys})

    @property
    def authors(self) -> int:
        return len({c.author for d in self.deploys for c in d.commits or ()})

    def lead_times(self) -> list[float]:
        return [d.shipped_at - c.at for d in self.deploys if d.commits and d.shipped_at is not None
                for c in d.commits]

    def failures(self) -> list[DeployFigures]:
        return [d for d in self.deploys if d.failed]

    def restore_times(self) -> list[float]:
        return [d.restored_at - d.failure_at for d in self.failures()
                if d.failure_at is not None and d.restored_at is not None]

    def line(self) -> str:
        """'In the last 7 days: 67 deploys of 496 changes by 18 people' (unknown changes said so)."""
        n = len(self.deploys)
        span = f"{self.days:g} day{'' if self.days == 1 else 's'}"
        if not n:
            return f"In the last {span}: no deploys"
        unknown = self.unknown_changes
        if len(unknown) == n:
            changes = f"unknown changes ({_why(unknown)})"
        else:
            changes = f"{self.changes} change{'' if self.changes == 1 else 's'}"
            if unknown:
                changes += f" (and unknown ones in {len(unknown)} deploy{'' if len(unknown) == 1 else 's'}:" \
                           f" {_why(unknown)})"
        return (f"In the last {span}: {n} deploy{'' if n == 1 else 's'} of {changes} by {self.people}"
                f" {'person' if self.people == 1 else 'people'}")

    def to_dict(self) -> dict:
        n = len(self.deploys)
        leads = self.lead_times()
        fails = self.failures()
        restores = self.restore_times()
        unknown = self.unknown_changes
        lead: dict = ({"median": statistics.median(leads), "p90": p90(leads), "commits": len(leads)} if leads else
                      {"unknown": self._lead_why()})
        cfr: dict = ({"rate": len(fails) / n, "failed": len(fails), "of": n,
                      "deploys": {str(d.id): d.failed for d in fails}} if n else {"unknown": "no deploys"})
        ttr: dict = ({"median": statistics.median(restores), "restored": len(restores),
                      "not_restored": len(fails) - len(restores)} if restores else
                     {"unknown": "no failed deploys" if not fails else
                      f"none of the {len(fails)} failed deploys was restored (rolled back or its gate holding again)"})
        return {
            "days": self.days, "since": self.since, "line": self.line(), "deploys": n,
            "changes": self.changes if len(unknown) < n else None,
            "changes_unknown": {str(d.id): d.why for d in unknown},
            "people": self.people, "authors": self.authors,
            "deploys_per_day": n / self.days if self.days else None,
            "lead_time": lead, "change_failure_rate": cfr, "time_to_restore": ttr,
        }

    def _lead_why(self) -> str:
        if not self.deploys:
            return "no deploys"
        if all(d.commits is None for d in self.deploys):
            return f"no commits known ({_why(self.deploys)})"
        if all(d.shipped_at is None for d in self.deploys):
            return "no deploy reached its last host"
        return "the deploys shipped no commits"

    def text(self) -> list[str]:
        """The figures as lines for a person."""
        d = self.to_dict()
        out = [self.line()]
        out.append(f"deploys per day: {d['deploys_per_day']:.2f}" if d["deploys"] else "deploys per day: 0")
        lt = d["lead_time"]
        out.append(f"lead time for changes: median {duration(lt['median'])}, p90 {duration(lt['p90'])}"
                   f" ({lt['commits']} commit{'' if lt['commits'] == 1 else 's'})" if "median" in lt else f"lead time for changes: unknown: {lt['unknown']}")
        c = d["change_failure_rate"]
        if "rate" in c:
            why = "; ".join(f"#{k} {', '.join(v)}" for k, v in c["deploys"].items())
            out.append(f"change failure rate: {c['rate']:.0%} ({c['failed']} of {c['of']})" + (f": {why}" if why else ""))
        else:
            out.append(f"change failure rate: unknown: {c['unknown']}")
        r = d["time_to_restore"]
        out.append(f"time to restore: median {duration(r['median'])} ({r['restored']} restored"
                   + (f", {r['not_restored']} not restored" if r["not_restored"] else "") + ")"
                   if "median" in r else f"time to restore: unknown: {r['unknown']}")
        return out


def _why(deploys: list[DeployFigures]) -> str:
    whys = sorted({d.why for d in deploys if d.why})
    return "; ".join(whys[:3]) + ("; ..." if len(whys) > 3 else "")


def p90(values: list[float]) -> float:
    """The 90th percentile by nearest rank: the smallest value with at least 90 % of them at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def duration(seconds: float) -> str:
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 90:
        return f"{sign}{s:.0f} s"
    if s < 90 * 60:
        return f"{sign}{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / DAY:.1f} days"


# ---------------------------------------------------------------------------------------------- computing
def of_week(journal_path, cfg) -> Figures:
    """compute() over the last WEEK days, for cfg's repository and kill switches, on a read-only connection of its
    own to the journal (journal_path: journal.db, or a Journal's store): a server calls it in a thread, as it runs
    git."""
    from controlroom.journal.journal import Journal

    j = Journal(journal_path, readonly=True)
    try:
        return compute(j.db, cfg.release.repo, days=WEEK,
                       kill_switches={f.name for f in cfg.flags.flags if f.kill_switch})
    finally:
        j.close()


def compute(db, repo: Path | None, *, days: float = 7, now: float | None = None,
            kill_switches: tuple[str, ...] | set[str] = ()) -> Figures:
    """The figures of the deploys started in the last ``days`` days before ``now``: the journal ``db`` (a
    connection; read only), the git repository ``repo`` the revisions are in (None: changes and lead times are
    unknown), the names of the config's kill switches."""
    now = time.time() if now is None else now
    since = now - days * DAY
    rows = record.deploys(db, since=since)
    latest = record.deploy(db)
    later = {r.id: latest is not None and latest.id > r.id for r in rows}
    events = record.events_of(db, [r.id for r in rows], _TYPES)
    flips = [f for f in record.flag_changes(db, since=since) if f["flag"] in set(kill_switches) and f["new"] == "off"]
    out = []
    for r in rows:
        d = DeployFigures(r.id, r.user, r.started_at)
        d.commits, d.why = _commits(repo, r)
        d.shipped_at = record.last_done(db, r.id)
        _judge(d, r, events.get(r.id, []), flips, later[r.id], now)
        out.append(d)
    return Figures(days, since, out)


def _commits(repo: Path | None, r: record.DeployRow) -> tuple[list[Commit] | None, str]:
    if repo is None:
        return None, "no [release] repo"
    if not r.previous:
        return None, f"#{r.id} has no previous revision"
    from controlroom.sources.git import run_git

    new = r.commit_hash or r.revision
    try:
        a = _sha(repo, r.previous)
        b = _sha(repo, new)
        out, cut = run_git(repo, "log", "--format=%H %ct %ae", f"{a}..{b}", "--")
    except ControlroomError as e:
        return None, f"#{r.id}: {e}"
    if cut:
        return None, f"#{r.id}: too many commits between {r.previous} and {r.revision} to read"
    commits = []
    for line in out.decode("utf-8", "replace").splitlines():
        sha, at, author = (line.split(" ", 2) + ["", ""])[:3]
        if sha and at.isdigit():
            commits.append(Commit(sha, float(at), author))
    return commits, ""


def _sha(repo: Path, rev: str) -> str:
    from controlroom.sources.git import GitFailed, run_git, validate_revision

    validate_revision(rev)  # never an option, never a range: a name
    try:
        out, _ = run_git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitFailed:
        out = b""  # --quiet: a name git does not know fails with nothing said
    sha = out.decode().strip()
    if not sha:
        raise ControlroomError(f"{rev} is not in the repository")
    return sha


def _judge(d: DeployFigures, r: record.DeployRow, rows: list[record.EventRow], flips: list[dict], later: bool,
           now: float) -> None:
    """Whether the deploy is a change failure (and why), when it failed and when it was restored."""
    end = r.finished_at if r.finished_at is not None else now
    failure_at = None
    restored = None
    rolled_back = False
    ended = None
    for row in rows:
        data = row.decoded()
        if row.type == "GateWaiting" and data.get("kind") == ev.GATE_FAILED or row.type == "PhaseHalted":
            failure_at = row.at if failure_at is None else failure_at
        elif row.type == "GateWaiting" and failure_at is not None and restored is None and data.get("verdicts") \
                and all(ev.GateVerdict(*v).state == ev.GateState.PASSED for v in data["verdicts"]):
            restored = row.at  # the gate holds again
        elif row.type == "OperatorAction" and data.get("action") == "rollback":
            failure_at = row.at if failure_at is None else failure_at  # a deploy that looked fine, taken back
        elif row.type == "RolloutFinished":
            status = data.get("status")
            if status == ev.R_ROLLED_BACK:
                rolled_back = True
                if restored is None:
                    restored = row.at
            elif status in (ev.R_FAILED, ev.R_ABORTED):
                ended = status
                failure_at = row.at if failure_at is None else failure_at
            end = row.at if status != ev.R_ROLLED_BACK else end
    if rolled_back:
        d.failed.append("rolled back")
    if ended:
        d.failed.append(ended)
    elif r.status in (ev.R_HALTED, ev.R_WAITING, ev.R_PAUSED, ev.R_RUNNING) and later and failure_at is not None:
        d.failed.append("halted for good")
    kill = [f for f in flips if r.started_at <= f["at"] <= end]
    if kill:
        d.failed.append("kill switch " + ", ".join(sorted({f["flag"] for f in kill})))
        failure_at = failure_at if failure_at is not None else kill[0]["at"]
    if d.failed:
        d.failure_at = failure_at
        d.restored_at = restored if restored is not None and failure_at is not None and restored >= failure_at \
            else None

"""The suspects behind a regression: which event before a breach the series' change lines up with.

When a gated series breaches, the events in the window before it (phase starts, hosts taking the revision, flag
changes) are ranked by a rank test, as Kayenta's judge does: for each event, the samples of the split it touched
(the hosts or the revision it put there) after it are compared with the same split before it, or, when the split did
not exist before (a new revision), with the rest of the fleet after it; the rest before and after says whether the
change was everywhere. An event's "before" begins at the previous event touching the same split and its "after"
ends at the next one (what those did is not its doing). The test is Mann-Whitney U (``mann_whitney_u``): exact for small samples without ties, the
normal approximation with a tie correction and a continuity correction otherwise.

It says it in words ("errors_5xx rose on r2307 hosts after 21:04:10 when stage 1 started; r2306 hosts unchanged;
p < 0.01"). With too few points on a side, or no split to compare, it says that instead of a suspect: never a guess.
No I/O here: the samples come from whoever has them (the metrics source, a timeline's journaled gate values).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from controlroom.core.text import clean

MIN_POINTS = 3  # per side: with fewer, no rank test can tell a change from chance (3 v 3 cannot reach p < 0.05)
ALPHA = 0.05
EXACT_MAX = 50  # both sides at most this big and no ties: the exact distribution of U


# ---------------------------------------------------------------------------------------------- the test
@dataclass(frozen=True)
class RankTest:
    u: float  # U of the first sample (the number of pairs in which it is the larger, ties counting half)
    p: float  # the p-value for the alternative asked
    method: str  # "exact" or "normal"
    n1: int
    n2: int

    @property
    def effect(self) -> float:
        """U / (n1 n2): the chance a value of the first sample beats one of the second (0.5: no difference)."""
        return self.u / (self.n1 * self.n2)


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give each U = 0..n1*n2 (no ties): f(u; m, n) = f(u - n; m-1, n) +
    f(u; m, n-1), the first sample's largest value either on top (beating all n) or not."""
    if n1 == 0 or n2 == 0:
        return (1,)
    a = _u_counts(n1 - 1, n2)
    b = _u_counts(n1, n2 - 1)
    out = [0] * (n1 * n2 + 1)
    for u in range(len(out)):
        if 0 <= u - n2 < len(a):
            out[u] += a[u - n2]
        if u < len(b):
            out[u] += b[u]
    return tuple(out)


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based, ties sharing their mean rank) and the sizes of the tied groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> RankTest:
    """Mann-Whitney U of x against y. alternative: "two-sided", "greater" (x tends to be larger) or "less".

    Exact when both samples have at most EXACT_MAX values and no value is tied; otherwise the normal approximation
    with the tie correction of the variance and a continuity correction of 0.5 (as scipy.stats.mannwhitneyu)."""
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("a rank test needs at least one value on each side")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    ranks, ties = _ranks([*x, *y])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if not ties and n1 <= EXACT_MAX and n2 <= EXACT_MAX:
        counts = _u_counts(n1, n2)
        total = math.comb(n1 + n2, n1)
        k = int(round(u))
        greater = sum(counts[k:]) / total  # P(U >= u)
        less = sum(counts[:k + 1]) / total  # P(U <= u)
        p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
        return RankTest(u, p, "exact", n1, n2)
    n = n1 + n2
    mu = n1 * n2 / 2
    tie = sum(t ** 3 - t for t in ties) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:  # every value the same: nothing moved
        return RankTest(u, 1.0, "normal", n1, n2)

    def sf(z: float) -> float:  # P(Z >= z)
        return 0.5 * math.erfc(z / math.sqrt(2))

    if alternative == "greater":
        p = sf((u - mu - 0.5) / sigma)
    elif alternative == "less":
        p = sf((mu - u - 0.5) / sigma)
    else:
        p = min(1.0, 2 * sf((abs(u - mu) - 0.5) / sigma))
    return RankTest(u, p, "normal", n1, n2)


# ---------------------------------------------------------------------------------------------- the suspects
@dataclass(frozen=True)
class Sample:
    at: float
    value: float
    split: str  # the line it belongs to: a revision ("r2307") or a host name; "" for a series not split


@dataclass(frozen=True)
class Candidate:
    """An event before the breach: when, what it was in words ("stage 1 started"), which splits it touched
    (empty: all of them, e.g. a flag change), and what held then ("new_search on"), said with it."""

    at: float
    what: str
    touched: frozenset[str] = frozenset()
    context: str = ""
    index: int | None = None  # its timeline entry, when it has one


@dataclass(frozen=True)
class Suspect:
    candidate: Candidate
    verdict: str  # "suspect", "unlikely" or "cannot tell"
    words: str
    p: float | None = None
    rest_p: float | None = None
    rose: bool | None = None
    split: bool = False  # judged on the split it touched (not only before against after on everything)

    def to_dict(self) -> dict:
        c = self.candidate
        return {"at": c.at, "what": clean(c.what, 200), "touched": sorted(c.touched), "index": c.index,
                "verdict": self.verdict, "words": self.words, "p": self.p, "rest_p": self.rest_p, "rose": self.rose,
                "split": self.split}


@dataclass
class Breach:
    """A series that broke its bound at ``at``: bad when it rises (a max bound) or when it falls (a min bound)."""

    series: str
    at: float
    rising: bool = True
    samples: list[Sample] = field(default_factory=list)


def p_words(p: float) -> str:
    return "p < 0.001" if p < 0.001 else "p < 0.01" if p < 0.01 else "p < 0.05" if p < 0.05 else f"p = {p:.2f}"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _label(splits: Iterable[str]) -> str:
    names = sorted(s for s in splits if s)
    return (", ".join(names) + " hosts") if names else "all hosts"


def judge(breach: Breach, candidates: Iterable[Candidate], *, window: float | None = None) -> list[Suspect]:
    """Every candidate before the breach (within ``window`` seconds of it, when given), best suspect first: the
    significant ones that moved the bad way (those a split tells apart from the rest before those seen only as a
    change everywhere, then the smallest p, the latest on a tie), then the unlikely ones, then those the data
    cannot tell about, each saying why."""
    samples = [s for s in breach.samples if s.at <= breach.at and not math.isnan(s.value)]
    splits = {s.split for s in samples}
    chosen = sorted((c for c in candidates if c.at <= breach.at and (window is None or c.at >= breach.at - window)),
                    key=lambda c: c.at)
    out = []
    for k, c in enumerate(chosen):
        # its "before" begins where the previous event touching the same split was, its "after" ends where the
        # next one begins: what those did is not its doing
        begin = max((o.at for o in chosen[:k] if o.at < c.at and _overlap(c, o, splits)), default=-math.inf)
        end = next((o.at for o in chosen[k + 1:] if o.at > c.at and _overlap(c, o, splits)), breach.at)
        mine = [s for s in samples if begin <= s.at and (s.at < end or s.at == end == breach.at)]
        out.append(_one(breach, c, mine, splits))
    rank = {"suspect": 0, "unlikely": 1, "cannot tell": 2}
    # one a split tells apart from the rest first: a change everywhere at once could be anything at that time
    out.sort(key=lambda s: (rank[s.verdict], s.rest_p is None and not s.split, s.p if s.p is not None else 2.0,
                            -s.candidate.at))
    return out


def _worse(x: list[float], y: list[float], alternative: str) -> bool:
    """Whether x is worse than y (the bad way: ``alternative`` "greater" or "less"), by the rank test at ALPHA."""
    return len(x) >= MIN_POINTS and len(y) >= MIN_POINTS and mann_whitney_u(x, y, alternative).p < ALPHA


def _overlap(a: Candidate, b: Candidate, splits: set[str]) -> bool:
    """Whether two events touched a split in common (an event touching no split in particular touches all)."""
    return not a.touched or not b.touched or bool(set(a.touched) & set(b.touched) & splits)


def _one(b: Breach, c: Candidate, samples: list[Sample], splits: set[str]) -> Suspect:
    when = f"after {_clock(c.at)} when {c.what}" + (f" ({c.context})" if c.context else "")
    split_known = splits - {""}
    touched = set(c.touched) & splits if c.touched else set()
    if c.touched and not touched:
        return Suspect(c, "cannot tell", f"{b.series}: no samples of {_label(c.touched)} {when}: cannot tell")
    if not c.touched or not split_known or touched == splits:
        # it touched everything (or the series has no split): only before against after, nothing to compare with
        before = [s.value for s in samples if s.at < c.at]
        after = [s.value for s in samples if s.at >= c.at]
        if len(before) < MIN_POINTS or len(after) < MIN_POINTS:
            return Suspect(c, "cannot tell", f"{b.series} {when}: too few points ({len(before)} before,"
                           f" {len(after)} after; {MIN_POINTS} needed on each side): cannot tell")
        t = mann_whitney_u(after, before, "greater" if b.rising else "less")
        rose = statistics.median(after) > statistics.median(before)
        moved = "rose" if rose else "fell"
        words = (f"{b.series} {moved} on {_label(splits)} {when}; no split to compare it with, so anything at that"
                 f" time could be the cause; {p_words(t.p)}")
        return Suspect(c, "suspect" if t.p < ALPHA else "unlikely", words, t.p, None, rose)
    rest = splits - touched
    mine = [s for s in samples if s.split in touched]
    others = [s for s in samples if s.split in rest]
    before = [s.value for s in mine if s.at < c.at]
    after = [s.value for s in mine if s.at >= c.at]
    r_before = [s.value for s in others if s.at < c.at]
    r_after = [s.value for s in others if s.at >= c.at]
    alt = "greater" if b.rising else "less"
    if len(after) < MIN_POINTS:
        return Suspect(c, "cannot tell", f"{b.series} on {_label(touched)} {when}: too few points after it"
                       f" ({len(after)}; {MIN_POINTS} needed): cannot tell")
    if len(before) >= MIN_POINTS:
        base, against = before, "than before"
    elif len(r_after) >= MIN_POINTS:
        base, against = r_after, "than the rest"  # a new split: compared with the rest at the same time
    else:
        return Suspect(c, "cannot tell", f"{b.series} on {_label(touched)} {when}: too few points to compare with"
                       f" ({len(before)} before it, {len(r_after)} of {_label(rest)} after it; {MIN_POINTS} needed):"
                       " cannot tell")
    t = mann_whitney_u(after, base, alt)
    rose = statistics.median(after) > statistics.median(base)
    moved = ("rose" if rose else "fell") if against == "than before" else ("higher" if rose else "lower")
    rest_p = None
    stands_out = False
    if len(r_before) >= MIN_POINTS and len(r_after) >= MIN_POINTS:
        rest_p = mann_whitney_u(r_after, r_before, "two-sided").p
        # the rest moved too, but did the split move with it? It stands out when, after the event, it is worse
        # than the rest (and, where both sides were seen before, it was not worse before): the rest's wiggle is
        # then not the change the event made on its split (a tiny move on a big sample has a small p too)
        stands_out = rest_p < ALPHA and _worse(after, r_after, alt) and not (
            len(before) >= MIN_POINTS and _worse(before, r_before, alt))
        rest_words = (f"{_label(rest)} unchanged" if rest_p >= ALPHA else
                      f"{_label(rest)} moved too ({p_words(rest_p)}), less than {_label(touched)}" if stands_out else
                      f"{_label(rest)} moved too ({p_words(rest_p)})")
    elif base is r_after:
        rest_words = f"{_label(rest)} as the baseline"
    else:
        rest_words = f"{_label(rest)}: too few points to say"
    head = (f"{b.series} {moved} on {_label(touched)} {when}" if against == "than before"
            else f"{b.series} {moved} on {_label(touched)} than on {_label(rest)} {when}")
    words = f"{head}; {rest_words}; {p_words(t.p)}"
    bad_way = rose == b.rising
    everywhere = rest_p is not None and rest_p < ALPHA and not stands_out
    verdict = "suspect" if t.p < ALPHA and bad_way and not everywhere else "unlikely"
    return Suspect(c, verdict, words, t.p, rest_p, rose, split=True)


# ---------------------------------------------------------------------------------------------- from a timeline
def candidates(timeline, t0: float, t1: float, splits: Iterable[str] = ()) -> list[Candidate]:
    """The events of a timeline between t0 and t1 that can move a series: phase starts (the split they touch is
    the deploy's revision), flag changes (every split) and, for a series split by host (``splits`` names hosts),
    each of those hosts taking the revision; each with the flags as they were then."""
    hosts = set(splits)
    out, seen = [], set()
    for e in timeline.between(t0, t1):
        d = e.values
        if e.type == "PhaseStarted":
            fleet = timeline.at(e.index)
            rev = fleet.revision or ""
            on = ", ".join(f"{k} {v}" for k, v in sorted(fleet.flags.items()))
            out.append(Candidate(e.at, f"{d.get('name')} started ({rev})", frozenset({rev}) if rev else frozenset(),
                                 on, e.index))
        elif e.type == "FlagChanged" and d.get("version") not in seen:  # the change, not its receipt later
            seen.add(d.get("version"))
            out.append(Candidate(e.at, f"flag {d.get('flag')} went {d.get('new')}", frozenset(), "", e.index))
        elif e.type == "HostStateChanged" and d.get("host") in hosts and d.get("state") == "done":
            out.append(Candidate(e.at, f"{d.get('host')} took {d.get('revision')}", frozenset({d["host"]}), "",
                                 e.index))
    return out


def from_history(history: dict[str, list[tuple[float, float]]]) -> list[Sample]:
    """A metrics source's history (sources/metrics.py: line label -> [(time, value)]) as samples."""
    return [Sample(float(t), float(v), str(label)) for label, points in history.items() for t, v in points
            if v is not None and not math.isnan(float(v))]


def for_breach(timeline, series: str, at: float, history: dict[str, list[tuple[float, float]]], *,
               rising: bool = True, window: float | None = None) -> list[Suspect]:
    """The suspects of a breach of ``series`` at time ``at`` during a timeline's deploy: its events from the
    window before the breach (the whole deploy when window is None) judged against the series' history split by
    revision or host. What the failed-gate dialog names is the first, when its verdict is "suspect"."""
    samples = from_history(history)
    start = (at - window) if window is not None else (timeline.began if timeline.began is not None else at)
    found = candidates(timeline, start, at, {s.split for s in samples})
    return judge(Breach(series, at, rising, samples), found, window=window)

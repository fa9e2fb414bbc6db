"""The suspects: Mann-Whitney U against textbook values, then the events before a breach ranked in words, and the
cases where the data cannot tell said so."""

from __future__ import annotations

import math
import random

import pytest

from controlroom.engine.record import Timeline
from controlroom.engine.suspects import (
    Breach,
    Candidate,
    Sample,
    _u_counts,
    candidates,
    for_breach,
    judge,
    mann_whitney_u,
)
from tests.records import Recorder

# ---------------------------------------------------------------------------------------------- the test


def test_the_exact_test_on_the_textbook_example():
    # scipy.stats.mannwhitneyu's documented example (Conover's males and females): U1 = 17, exact p = 0.1111
    males = [19, 22, 16, 29, 24]
    females = [20, 11, 17, 12]
    t = mann_whitney_u(males, females)
    assert t.method == "exact" and t.u == 17 and t.p == pytest.approx(0.11111111, abs=1e-8)
    assert mann_whitney_u(females, males).u == 3  # U1 + U2 = n1 n2
    # one-sided: P(U >= 17) = 7/126
    assert mann_whitney_u(males, females, "greater").p == pytest.approx(7 / 126)


@pytest.mark.parametrize(("n", "critical"), [(5, 2), (8, 13), (10, 23), (20, 127)])
def test_the_exact_distribution_gives_the_tables_critical_values(n, critical):
    # the two-tailed alpha = 0.05 critical values of U for n1 = n2 = n in every table of the test
    counts = _u_counts(n, n)
    total = math.comb(2 * n, n)
    assert sum(counts) == total
    assert sum(counts[:critical + 1]) / total <= 0.025 < sum(counts[:critical + 2]) / total


def test_the_normal_approximation_with_ties():
    # scipy's documented asymptotic p for the textbook example (no ties): 0.11134688653314041
    t = mann_whitney_u([19, 22, 16, 29, 24] * 11, [20, 11, 17, 12] * 13)  # ties: the normal approximation
    assert t.method == "normal"
    x = [19, 22, 16, 29, 24]
    y = [20, 11, 17, 12]
    # the same data with a tie added on both sides, by hand: x 16 17 19 22 24 29 and y 11 12 17 20 24 have the
    # ranks 3 4.5 6 8 9.5 11 (R1 = 42) and 1 2 4.5 7 9.5: U1 = 42 - 6*7/2 = 21, mu = 6*5/2 = 15, two ties of two
    t = mann_whitney_u([*x, 17], [*y, 24])
    n1, n2, n = 6, 5, 11
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - 2 * (2 ** 3 - 2) / (n * (n - 1))))
    z = (21 - 15 - 0.5) / sigma
    assert t.method == "normal" and t.u == 21
    assert t.p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    # and values cross-checked with scipy.stats.mannwhitneyu(method="asymptotic") 1.17
    a = [1, 2, 2, 3, 3, 3, 4, 5, 6, 6, 7, 8]
    b = [3, 4, 4, 5, 6, 7, 7, 8, 8, 9, 9, 10, 11]
    assert mann_whitney_u(a, b).u == 30
    assert mann_whitney_u(a, b).p == pytest.approx(0.009371664169231873, rel=1e-12)
    assert mann_whitney_u(a, b, "less").p == pytest.approx(0.004685832084615937, rel=1e-12)
    assert mann_whitney_u(a, b, "greater").p == pytest.approx(0.9960096905207342, rel=1e-12)


def test_nothing_moved_and_empty_sides():
    assert mann_whitney_u([3, 3, 3], [3, 3, 3]).p == 1.0
    with pytest.raises(ValueError):
        mann_whitney_u([], [1])


# ---------------------------------------------------------------------------------------------- the suspects
T0 = 1_790_000_000.0


def samples(split: str, t0: float, t1: float, level: float, rnd: random.Random, step: float = 5) -> list[Sample]:
    out = []
    t = t0
    while t < t1:
        out.append(Sample(t, level + rnd.random(), split))
        t += step
    return out


def test_the_phase_start_that_put_the_revision_there_is_the_suspect():
    rnd = random.Random(1)
    stage1 = T0 + 300
    breach_at = T0 + 600
    s = (samples("r2306", T0, breach_at, 1.0, rnd) + samples("r2307", T0 + 100, stage1, 1.0, rnd)
         + samples("r2307", stage1, breach_at, 7.0, rnd))
    b = Breach("errors_5xx", breach_at, rising=True, samples=s)
    found = judge(b, [Candidate(T0 + 100, "canary started (r2307)", frozenset({"r2307"})),
                      Candidate(stage1, "stage 1 started", frozenset({"r2307"}), "new_search on"),
                      Candidate(T0 + 450, "flag new_search went on"),
                      Candidate(breach_at + 5, "after the breach: never a suspect")])
    assert [f.candidate.what for f in found][:1] == ["stage 1 started"]
    top = found[0]
    assert top.verdict == "suspect" and top.p < 0.01 and top.rose
    assert top.words.startswith("errors_5xx rose on r2307 hosts after ")
    assert "when stage 1 started (new_search on); r2306 hosts unchanged; p < 0.0" in top.words
    assert all("after the breach" not in f.candidate.what for f in found)
    flag = next(f for f in found if f.candidate.what.startswith("flag"))
    assert "no split to compare it with" in flag.words and not flag.split and top.split


def test_a_change_seen_on_its_split_ranks_before_a_change_seen_only_everywhere():
    rnd = random.Random(6)
    flip, start = T0 + 200, T0 + 400
    # everything rises a little at the flag change (a big sample: a tiny p), r2307 a lot at its start
    s = [Sample(t, (1.0 if t < flip else 1.3) + rnd.random() * 0.2, "r2306") for t in range(int(T0), int(T0) + 600, 2)]
    s += [Sample(t, (1.0 if t < flip else 1.3 if t < start else 6.0) + rnd.random() * 0.2, "r2307")
          for t in range(int(T0), int(T0) + 600, 2)]
    found = judge(Breach("errors_5xx", T0 + 600, samples=s),
                  [Candidate(flip, "flag x went on"), Candidate(start, "stage 1 started", frozenset({"r2307"}))])
    assert [f.candidate.what for f in found] == ["stage 1 started", "flag x went on"]
    assert found[1].verdict == "suspect" and found[1].p < found[0].p  # significant, smaller p, still second


def test_a_new_revision_is_compared_with_the_rest_at_the_same_time():
    rnd = random.Random(2)
    start = T0 + 300
    s = samples("r2306", T0, T0 + 600, 1.0, rnd) + samples("r2307", start, T0 + 600, 9.0, rnd)
    top = judge(Breach("errors_5xx", T0 + 600, samples=s), [Candidate(start, "canary started", frozenset({"r2307"}))])[0]
    assert top.verdict == "suspect"
    assert "errors_5xx higher on r2307 hosts than on r2306 hosts after" in top.words and "p < 0.001" in top.words


def test_too_few_points_or_no_samples_are_said_never_guessed():
    s = [Sample(T0 + 10, 1.0, "r2306"), Sample(T0 + 400, 9.0, "r2307"), Sample(T0 + 410, 9.5, "r2307")]
    found = judge(Breach("errors_5xx", T0 + 500, samples=s),
                  [Candidate(T0 + 300, "stage 1 started", frozenset({"r2307"})),
                   Candidate(T0 + 200, "web009 took r9", frozenset({"r9"})),
                   Candidate(T0 + 100, "flag x went on")])
    assert {f.verdict for f in found} == {"cannot tell"}
    words = " | ".join(f.words for f in found)
    assert "too few points" in words and "no samples of r9 hosts" in words and "cannot tell" in words


def test_a_change_everywhere_is_not_blamed_on_one_split():
    rnd = random.Random(4)
    at = T0 + 300
    s = (samples("r2306", T0, at, 1.0, rnd) + samples("r2306", at, T0 + 600, 8.0, rnd)
         + samples("r2307", T0, at, 1.0, rnd) + samples("r2307", at, T0 + 600, 8.0, rnd))
    top = judge(Breach("errors_5xx", T0 + 600, samples=s), [Candidate(at, "stage 1 started", frozenset({"r2307"}))])[0]
    assert top.verdict == "unlikely" and "r2306 hosts moved too" in top.words


def test_candidates_from_the_demo_timeline(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    try:
        times = r.demo_story(T0)
        tl = Timeline.read(r.j.db, times["rid"])
        found = candidates(tl, times["start"], times["gate_failed"])
        assert [c.what for c in found] == ["canary started (r2307)", "stage 1 started (r2307)"]
        assert found[1].touched == frozenset({"r2307"}) and found[1].context == "new_search on"
        # the journal's gate values alone have one line (the revision judged): nothing to compare with
        series = tl.series()[("errors_5xx < 5", "r2307")]
        b = Breach("errors_5xx", times["gate_failed"],
                   samples=[Sample(t, v, "r2307") for t, v in series if t <= times["gate_failed"]])
        assert all(s.verdict == "cannot tell" for s in judge(b, found))
        # a series split by host: the hosts taking the revision are candidates too
        by_host = candidates(tl, times["start"], times["gate_failed"], splits={"web002", "web009"})
        assert [c.what for c in by_host][-1] == "web002 took r2307" and by_host[-1].touched == {"web002"}
    finally:
        r.close()


def test_the_demo_breach_names_stage_1s_start_of_r2307_with_the_flag_on(tmp_path, monkeypatch):
    """The story's breach, with the series as a metrics source gives it (per revision, every 2 s): r2307 hosts
    rise once stage 1 puts r2307 on more hosts, r2306 hosts stay; the suspect is stage 1's start, new_search on."""
    r = Recorder(tmp_path / "state", monkeypatch)
    try:
        times = r.demo_story(T0)
        tl = Timeline.read(r.j.db, times["rid"])
        rnd = random.Random(5)
        history: dict[str, list[tuple[float, float]]] = {"r2306": [], "r2307": []}
        t = T0 - 60
        while t <= times["gate_failed"]:
            history["r2306"].append((t, 0.5 + rnd.random() * 0.3))
            if t >= T0 + 1:  # the canary took r2307
                history["r2307"].append((t, (7.0 if t >= times["stage1"] else 0.5) + rnd.random() * 0.3))
            t += 0.5
        found = for_breach(tl, "errors_5xx", times["gate_failed"], history)
        top = found[0]
        assert top.verdict == "suspect" and top.candidate.what == "stage 1 started (r2307)"
        assert top.candidate.context == "new_search on"
        assert "errors_5xx rose on r2307 hosts after" in top.words and "when stage 1 started (r2307) (new_search on)" \
            in top.words and "r2306 hosts unchanged; p < 0.0" in top.words
        canary = next(s for s in found if s.candidate.what.startswith("canary"))
        assert canary.verdict != "suspect"  # r2307 came with the canary, but its errors did not rise then
    finally:
        r.close()


def _demo_history(tmp_path, canary_at: int, breach_at: int) -> dict[str, list[tuple[float, float]]]:
    """errors_5xx by revision every 2 s as the demo's simulated fleet computes it (metrics_sim, 20 hosts, one tick
    a second), web001 and web002 taking r2307 (new_search on by default) at tick ``canary_at``."""
    from controlroom.demo import metrics_sim

    roots = []
    for i in range(1, 21):
        root = tmp_path / f"web{i:03d}"
        root.mkdir()
        (root / "REVISION").write_text("r2306\n")
        roots.append((root.name, root))
    sim = metrics_sim.SimMetrics(roots)
    history: dict[str, list[tuple[float, float]]] = {}
    for t in range(breach_at + 1):
        if t == canary_at:
            for _, root in roots[:2]:
                (root / "REVISION").write_text("r2307\n")
        total: dict[tuple, float] = {}
        for h in sim.hosts.values():
            h.tick(True)
            for k, v in h.totals().items():
                total[k] = total.get(k, 0.0) + v
        sim.history.append((T0 + t, total))
        if t % 2 == 0:
            for line, v in sim.evaluate("errors_5xx", T0 + t).items():
                history.setdefault(line, []).append((T0 + t, v))
    return history


@pytest.mark.parametrize("canary_at", range(80, 130, 4))
def test_the_demo_fleets_r2306_wiggle_does_not_clear_the_canary_of_r2307s_errors(tmp_path, canary_at):
    """On the demo's fleet r2306's errors_5xx steps by a few hundredths of a percent as hosts leave it (whole errors
    in a 20 s window): on a minute of samples that is "moved too" by the rank test, but r2307 hosts at ~8% stand
    out from them, so the canary stays the suspect (the failed-gate dialog said "none lines up" 20 s after the gate
    failed)."""
    breach = canary_at + 40
    history = _demo_history(tmp_path, canary_at, breach)
    canary = Candidate(T0 + canary_at, "canary started (r2307)", frozenset({"r2307"}), "new_search on")
    top = judge(Breach("errors_5xx", T0 + breach, samples=[Sample(t, v, line) for line, pts in history.items()
                                                            for t, v in pts]), [canary])[0]
    assert top.verdict == "suspect", top.words
    assert top.words.startswith("errors_5xx higher on r2307 hosts than on r2306 hosts after "), top.words
    assert "r2306 hosts unchanged" in top.words or "r2306 hosts moved too (p < 0.0" in top.words and \
        "less than r2307 hosts" in top.words, top.words

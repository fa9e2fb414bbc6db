"""The gate judge on its own: what a gate says about the values its series has now (controlroom.engine.gates judge/parse).

No fleet and no metrics source: the values are what a source would answer, line -> value.
"""

from __future__ import annotations

import math

import pytest

from controlroom.engine.gates import FAILED, PASSED, UNKNOWN, judge, parse


@pytest.mark.parametrize("expr, holds, breaks", [
    ("errors_5xx < 5", 4.9, 5),
    ("errors_5xx <= 5", 5, 5.01),
    ("success_rate > 0.99", 0.995, 0.99),
    ("success_rate >= 0.99", 0.99, 0.98),
    ("replicas == 3", 3, 2),
    ("crashloops != 1", 0, 1),
])
def test_every_operator_passes_a_value_that_holds_and_fails_one_that_breaks_it(expr, holds, breaks):
    assert judge(expr, {"": holds}).state == PASSED
    failed = judge(expr, {"": breaks})
    assert failed.state == FAILED and failed.value == breaks


def test_a_gate_is_read_as_series_operator_and_number_and_anything_else_is_refused_naming_it():
    assert parse("errors_5xx<5") == ("errors_5xx", "<", 5.0)
    assert parse("  latency_p99 >= -1.5 ") == ("latency_p99", ">=", -1.5)
    for bad in ("errors_5xx < five", "5xx < 5", "errors_5xx =< 5", "errors_5xx < 5; rm -rf /", "errors_5xx < inf"):
        with pytest.raises(ValueError, match="cannot read gate"):
            parse(bad)


@pytest.mark.parametrize("value, why", [
    (math.nan, "errors_5xx is NaN"),
    (math.inf, "errors_5xx is +Inf, not a finite number"),
    (-math.inf, "errors_5xx is -Inf, not a finite number"),
])
def test_only_a_finite_number_counts_nan_and_the_infinities_leave_the_gate_unknown(value, why):
    v = judge("errors_5xx < 5", {"": value})
    assert v.state == UNKNOWN and v.why == why and v.value is None
    assert "UNKNOWN" in v.text("canary") and v.wire().value is None


def test_a_line_that_fails_fails_the_gate_even_beside_a_nan_line():
    v = judge("errors_5xx < 5", {"web001": math.nan, "web002": 7.9})
    assert v.state == FAILED and v.line == "web002" and v.value == 7.9


def test_no_data_is_unknown_never_passed():
    for empty in ({}, []):
        v = judge("errors_5xx < 5", empty)
        assert v.state == UNKNOWN and v.why == "no data"
    assert judge("errors_5xx < 5", {}, revision="r2307").state == UNKNOWN


def test_lines_that_share_a_label_are_each_judged_so_the_worse_one_counts():
    v = judge("errors_5xx < 5", [("r2307", 1.0), ("r2307", 9.0), ("r2306", 0.0)])
    assert v.state == FAILED and v.line == "r2307" and v.value == 9.0


def test_when_every_line_holds_the_one_nearest_the_limit_stands_for_the_series():
    v = judge("errors_5xx < 5", {"a": 0.5, "b": 4.5, "c": 2.0})
    assert v.state == PASSED and (v.line, v.value) == ("b", 4.5)
    assert v.text("canary") == "GATE canary: errors_5xx{b} = 4.5 (max 5): PASSED"


def test_the_deployed_revisions_line_is_judged_when_the_series_has_one_and_the_verdict_names_it():
    lines = {"r2306": 12.0, "r2307": 1.0}  # the old revision is bad, the one being deployed is fine
    v = judge("errors_5xx < 5", lines, revision="r2307")
    assert v.state == PASSED and v.line == "r2307"
    failing = judge("errors_5xx < 5", {"r2306": 1.0, "r2307": 7.9}, revision="r2307")
    assert failing.text("canary") == "GATE canary: errors_5xx{r2307} = 7.9 (max 5): FAILED"


def test_a_revision_the_series_has_no_line_for_judges_every_line():
    v = judge("errors_5xx < 5", {"r2305": 1.0, "r2306": 7.0}, revision="r2307")
    assert v.state == FAILED and v.line == "r2306"


def test_the_verdict_travels_with_its_operator_threshold_and_series():
    w = judge("success_rate >= 0.99", {"": 0.97}).wire()
    assert (w.series, w.op, w.threshold, w.value, w.state) == ("success_rate", ">=", 0.99, 0.97, FAILED)
    assert judge("success_rate >= 0.99", {"": 0.97}).text("all") == \
        "GATE all: success_rate = 0.97 (min 0.99): FAILED"

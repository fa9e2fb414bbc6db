"""The gate grammar, once (controlroom/config/gates.py): what the config reads a phase's gates with, and what the
engine judges them by."""

from __future__ import annotations

import pytest

from controlroom.config.gates import Gate


def test_a_gate_keeps_its_series_operator_threshold_and_the_text_it_was_written_as():
    g = Gate.parse("  errors_5xx<=5.0 ")
    assert (g.series, g.op, g.threshold, g.text) == ("errors_5xx", "<=", 5.0, "  errors_5xx<=5.0 ")
    assert g.limit() == "max 5.0"  # the number as written
    assert Gate.parse("success_rate > 0.99").limit() == "min 0.99"
    assert Gate.parse("replicas == 3").limit() == "== 3"
    assert Gate.parse("errors_5xx < 5").holds(4.9) and not Gate.parse("errors_5xx < 5").holds(5)
    assert not Gate.parse(f"x < {'9' * 400}").finite  # read, then refused by the config as not finite


@pytest.mark.parametrize("bad", ["errors_5xx < five", "5xx < 5", "errors_5xx =< 5", "errors_5xx < 5; rm -rf /",
                                 "errors_5xx is low", ""])
def test_anything_else_is_not_a_gate_and_says_how_to_write_one(bad):
    assert Gate.read(bad) is None
    with pytest.raises(ValueError, match=r"cannot read gate .*: write it as 'SERIES < NUMBER'"):
        Gate.parse(bad)

"""A fleet whose canary gate fails, the same way for every test that needs one.

``metrics_fleet``: six simulated hosts serving metrics; on r2307 with new_search on they answer ~8% 5xx, so the
canary's gate (errors_5xx < 5) fails, as in the demo's story. ``gated_fleet``: the same with a bake far longer than
any test waits (``long_bake``), so only a failed check ends the bake and the halt comes from the gate alone.
conftest.py offers both fixtures to every module. The app's way there, start
and d until the failed gate's choices show, is tests/e2e/test_gate_kill_switch.py's ``to_the_failed_gate``.
"""

from __future__ import annotations

import re

import pytest

from controlroom.demo.fleet import Fleet


def long_bake(fleet: Fleet) -> None:
    """A bake far longer than any test waits: only a failed check ending it early lets the halt come."""
    text = fleet.config_path.read_text()
    assert re.search(r'^bake = "\d+s"$', text, re.M)
    fleet.config_path.write_text(re.sub(r'^bake = "\d+s"$', 'bake = "20m"', text, flags=re.M))


@pytest.fixture
def metrics_fleet(tmp_path):
    """Six simulated hosts serving metrics; the canary's gate fails on errors_5xx (the demo's story)."""
    fleet = Fleet(tmp_path / "fleet", 6, metrics=True).start_in_thread()
    yield fleet
    fleet.stop_thread()


@pytest.fixture
def gated_fleet(metrics_fleet):
    """The metrics fleet with a canary that bakes far longer than a test waits: its failed check ends the bake."""
    long_bake(metrics_fleet)
    return metrics_fleet

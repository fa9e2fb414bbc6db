"""Config values are checked for what they mean (issue 15): thresholds and intervals are finite numbers in range. A
threshold of NaN is never crossed, an infinite one never either, an interval of a nanosecond is a busy loop, a bake
of 1e300 s is a gate that never decides. Each is one line `file:line: key: why`, exit 2, from `check` and from every
other command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli

SERIES = '[metrics]\nurl = "http://127.0.0.1:9"\n[metrics.series.errors_5xx]\nquery = "q"\n'
PHASE = '[[phase]]\nname = "all"\nsize = "100%"\n'

CASES = {
    "max = nan": (SERIES + "max = nan\n", 9, "metrics.series.errors_5xx.max", "must be a finite number, got nan"),
    "max = inf": (SERIES + "max = inf\n", 9, "metrics.series.errors_5xx.max", "must be a finite number, got inf"),
    "min = -inf": (SERIES + "min = -inf\n", 9, "metrics.series.errors_5xx.min",
                   "must be a finite number, got -inf"),
    "min above max": (SERIES + "max = 1\nmin = 5\n", 10, "metrics.series.errors_5xx.min",
                      "must not be above max (5 > 1): every value would breach"),
    "an interval of a nanosecond": ('[metrics]\nurl = "http://127.0.0.1:9"\ninterval = 1e-9\n', 7,
                                    "metrics.interval", "must be at least 0.5 s, got 1e-09 s"),
    "an interval of 1e300 s": ('[metrics]\nurl = "http://127.0.0.1:9"\ninterval = 1e300\n', 7,
                               "metrics.interval", "must be at most 1 h (3600 s), got 1e+300 s"),
    "a window shorter than the interval": ('[metrics]\nurl = "http://127.0.0.1:9"\ninterval = "1m"\n'
                                           'window = "10s"\n', 8, "metrics.window",
                                           "must be at least the interval (60 s), got 10 s"),
    "a bake of 1e300 s": (PHASE + "bake = 1e300\n", 8, "phase[0].bake",
                          "must be at most 30 days (2592000 s), got 1e+300 s"),
    "a bake of -1s": (PHASE + 'bake = "-1s"\n', 8, "phase[0].bake",
                      'must be seconds or a duration like "90s", "2m", "1h", got \'-1s\' (a duration is never '
                      "negative)"),
    "a step timeout of 1e300 s": ('[deploy]\nstep_timeout = 1e300\n', 6, "deploy.step_timeout",
                                  "must be at most 30 days (2592000 s), got 1e+300 s"),
    "a keepalive of a nanosecond": ('keepalive_interval = 1e-9\n', 5,
                                    "inventory.ssh.keepalive_interval", "must be at least 0.1 s, got 1e-09 s"),
    "a gate limit past any float": (SERIES + PHASE + f'gate = ["errors_5xx < {"9" * 400}"]\n', 12,
                                    "phase[0].gate", "its limit is not a finite number"),
}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "controlroom.toml"
    (tmp_path / "known_hosts").write_text("")
    p.write_text('[inventory]\nhosts = ["web1"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n' + text)
    return p


@pytest.mark.parametrize("case", list(CASES))
def test_a_value_that_cannot_mean_what_it_says_is_one_line_naming_file_line_and_key(tmp_path, case):
    text, line, key, why = CASES[case]
    path = write(tmp_path, text)
    for command in (("check",), ("log",)):  # check, and a command that only reads the config
        res = run_cli(*command, "--config", str(path), cwd=tmp_path)
        assert res.returncode == 2, (command, res.stdout + res.stderr)
        assert res.stdout == "", (command, res.stdout)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, (command, res.stderr)
        said = res.stderr.removeprefix("controlroom: ").rstrip("\n")
        assert re.match(rf"^{re.escape(str(path))}:{line}: {re.escape(key)}: ", said), (command, said)
        assert said.endswith(why), (command, said)

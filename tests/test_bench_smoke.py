"""The benchmarks are run by hand; this runs the scale bench's smoke size so that it cannot rot unnoticed.

Nothing here looks at a timing: the bench must finish, every host must hold the floor's and then the deploy's
revision (the bench exits non-zero otherwise), and its table must carry a figure in every column."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_scale_bench_quick_deploys_through_the_server_and_fills_every_column():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--quick"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("hosts  floor s"))
    row = lines[head + 1].split()
    assert row[0] == "20", lines[head : head + 2]
    # hosts, floor s, deploy s, time/floor, CPU s, CPU ms/host, peak MB, KB/host, KB/added host (one size: -),
    # events/watcher, event p95, key p95, keys, idle key p95: a number in each but the one that needs two sizes
    assert row[8] == "-" and "-" not in row[:8] + row[9:14], lines[head : head + 2]
    assert int(row[12]) > 0 and "FAILED" not in lines[head + 1]
    assert "note: 20 hosts: 2 fleet processes" in done.stdout

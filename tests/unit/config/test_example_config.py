"""The example controlroom.toml at the top of the repo works as its comment says."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import REPO, run_cli


@pytest.mark.slow
def test_example_config_drives_a_150_host_fleet_started_in_demo_fleet(make_fleet, tmp_path):
    make_fleet(150, name="demo-fleet")
    shutil.copy(REPO / "controlroom.toml", tmp_path / "controlroom.toml")

    check = run_cli("check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "hosts: 150" in check.stdout
    assert re.search(r"^  canary +2 hosts", check.stdout, re.M)
    assert re.search(r"^  stage 1 +15 hosts", check.stdout, re.M)
    assert re.search(r"^  stage 2 +133 hosts", check.stdout, re.M)
    assert "beehive" in check.stdout and "kill switch" in check.stdout

    run = run_cli("run", "cat REVISION", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("150 hosts: 150 ok")
    assert run.stdout.splitlines()[:-1] == ["web[001:150] (150): r2306"]  # identical output: one group


def test_example_config_without_its_fleet_says_how_to_start_it(tmp_path):
    shutil.copy(REPO / "controlroom.toml", tmp_path / "controlroom.toml")
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    # every missing file of the fleet directory is named, known_hosts first: it says where the keys come from
    assert "controlroom.toml:11: inventory.ssh.known_hosts: file not found" in lines[0]
    assert [line.split(": ")[2] for line in lines] == [
        "inventory.ssh.known_hosts",
        "inventory.ssh.identity_file",
        "inventory.ssh.config",
    ]

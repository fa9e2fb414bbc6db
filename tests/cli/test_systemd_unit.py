"""contrib/controlroom.service: the unit the README tells a bastion's admin to install runs the server as the README
says (its own user in the team's group, the state directory, the secrets file, restarted on failure), and its
command line is one controlroom reads."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from controlroom.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "controlroom.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_server_as_its_own_user_in_the_teams_group_and_restarts_on_failure():
    service = unit()["Service"]
    assert (service["User"], service["Group"]) == ("controlroom", "deploy")
    assert service["StateDirectory"] == "controlroom" and service["StateDirectoryMode"] == "0710"
    assert service["EnvironmentFile"] == "-/etc/controlroom/secrets.env"
    assert service["Restart"] == "on-failure"
    assert service["UMask"] == "0077"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_its_command_line_is_controlroom_serve_without_idle_exit_and_with_the_config():
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert Path(argv[0]).name == "controlroom"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.idle == 0
    assert args.config == "/etc/controlroom/controlroom.toml"


def test_the_readme_names_the_unit_and_its_install_steps():
    readme = (REPO / "README.md").read_text()
    assert "contrib/controlroom.service" in readme
    assert "systemctl enable --now controlroom" in readme and "[state] dir" in readme


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong_with_it_but_the_path_of_the_install(tmp_path):
    res = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if line.strip() and "/opt/controlroom/.venv/bin/controlroom" not in line]
    assert problems == []

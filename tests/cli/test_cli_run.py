"""`controlroom run` and `controlroom fleet` as the operator types them: one line per host, a summary, exit codes."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlroom.demo.fleet import Fleet
from tests.conftest import REPO, run_cli
from tests.unit.fleet.test_ssh import ONE_OF_EACH, ONE_OF_EACH_LABELS

HOST_LINE = re.compile(
    r"^(?P<host>\S+)  (?P<label>exit -?\d+|\S+) +(?P<secs>\d+\.\d\d) s(?:  (?P<detail>.*))?$"
)


def fast_config(fleet: Fleet, body_edit=None) -> Path:
    """The fleet's controlroom.toml with connect_timeout = 1, so a hung host ends in a second."""
    text = fleet.config_path.read_text()
    assert "connect_timeout = 5" in text
    text = text.replace("connect_timeout = 5", "connect_timeout = 1")
    if body_edit:
        text = body_edit(text)
    path = (
        fleet.dir / "fast.toml"
    )  # beside the original: its relative paths (known_hosts, client_key) still hold
    path.write_text(text)
    return path


def host_lines(stdout: str) -> dict[str, re.Match]:
    lines = stdout.splitlines()
    matches = [HOST_LINE.match(line) for line in lines[:-1]]
    assert all(matches), stdout
    return {m["host"]: m for m in matches}


def summary(stdout: str) -> str:
    """The last line without its elapsed time: '10 hosts: 10 ok'."""
    last = stdout.splitlines()[-1]
    assert re.search(r" \(\d+\.\d s\)$", last), last
    return last.rsplit(" (", 1)[0]


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------- run


def test_run_true_on_150_hosts_reports_every_host_ok(big_fleet):
    res = run_cli("run", "--each", "true", "--config", str(big_fleet.config_path))
    assert res.returncode == 0, res.stderr
    lines = host_lines(res.stdout)
    assert sorted(lines) == [h.name for h in big_fleet.hosts]
    assert {m["label"] for m in lines.values()} == {"ok"}
    assert summary(res.stdout) == "150 hosts: 150 ok"


def test_run_on_a_fleet_with_one_broken_host_of_each_kind_names_each_failure(make_fleet):
    fleet = make_fleet(8, ONE_OF_EACH)
    res = run_cli("run", "--each", "echo $HOSTNAME", "--config", str(fast_config(fleet)))
    assert res.returncode == 1, res.stderr
    lines = host_lines(res.stdout)
    assert {host: m["label"] for host, m in lines.items()} == ONE_OF_EACH_LABELS
    assert lines["web001"]["detail"] == "connection refused"
    assert lines["web002"]["detail"] == "connect timed out after 1 s"
    assert lines["web003"]["detail"] == "web003: simulated failure"
    assert lines["web005"]["detail"] == "web005"
    assert lines["web008"]["detail"] == "web008"
    assert (
        summary(res.stdout) == "8 hosts: 2 ok, 1 auth, 1 dropped, 1 exit 1, 1 hostkey, 1 refused, 1 timeout"
    )


def test_run_with_a_timeout_shorter_than_a_slow_host_reports_timeout(make_fleet):
    fleet = make_fleet(3, "web002=slow:2")  # slow enough to miss the timeout by a second; each command waits it
    res = run_cli("run", "--each", "echo hi", "--timeout", "1", "--config", str(fleet.config_path))
    assert res.returncode == 1
    lines = host_lines(res.stdout)
    assert lines["web002"]["label"] == "timeout"
    assert lines["web002"]["detail"] == "timed out after 1 s"
    assert summary(res.stdout) == "3 hosts: 2 ok, 1 timeout"


def test_run_changes_what_the_hosts_hold(fleet):
    res = run_cli("run", 'echo "$HOSTNAME" > who', "--config", str(fleet.config_path))
    assert res.returncode == 0, res.stderr
    for h in fleet.hosts:
        assert (h.root / "who").read_text() == f"{h.name}\n"


GROUPED = """\
[inventory.groups.front]
hosts = ["web[001:004]"]
colo = "mud"

[inventory.groups.back]
hosts = ["web[005:010]"]
colo = "sp1"
"""


def grouped_config(fleet: Fleet) -> Path:
    return fast_config(fleet, lambda text: text.replace('[inventory]\nhosts = ["web[001:010]"]\n', GROUPED))


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("front", ["web001", "web002", "web003", "web004"]),
        ("web[006:008]", ["web006", "web007", "web008"]),
        ("web01*", ["web010"]),
        ("web00[19]", ["web001", "web009"]),
        ("back,web002", ["web002", "web005", "web006", "web007", "web008", "web009", "web010"]),
    ],
)
def test_run_on_some_hosts_touches_only_those(fleet, hosts, expected):
    res = run_cli("run", "--each", "touch picked", "--hosts", hosts, "--config", str(grouped_config(fleet)))
    assert res.returncode == 0, res.stderr
    assert sorted(host_lines(res.stdout)) == expected
    noun = "host" if len(expected) == 1 else "hosts"
    assert summary(res.stdout) == f"{len(expected)} {noun}: {len(expected)} ok"
    assert sorted(h.name for h in fleet.hosts if (h.root / "picked").exists()) == expected


def test_run_on_hosts_that_match_nothing_exits_2_naming_the_groups(fleet):
    msg = one_line_error(run_cli("run", "true", "--hosts", "nope", "--config", str(grouped_config(fleet))))
    assert msg == "controlroom: --hosts: 'nope' matches no host or group (groups: all, back, front)"
    assert not any((h.root / "picked").exists() for h in fleet.hosts)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--parallel", "0"], "controlroom: --parallel must be at least 1"),
        (["--timeout", "0"], "controlroom: --timeout must be more than 0 seconds"),
        (
            ["--parallel", "many"],
            "controlroom: argument --parallel: invalid int value: 'many' (see `controlroom run --help`)",
        ),
    ],
)
def test_run_with_a_bad_option_exits_2_with_one_line(fleet, args, says):
    assert one_line_error(run_cli("run", "true", *args, "--config", str(fleet.config_path))) == says


def test_run_without_a_command_exits_2_with_one_line(fleet):
    msg = one_line_error(run_cli("run", "--config", str(fleet.config_path)))
    assert "the following arguments are required: CMD" in msg


def test_run_with_bad_config_exits_2_before_touching_a_host(fleet):
    bad = fleet.dir / "bad.toml"
    bad.write_text(fleet.config_path.read_text().replace("connect_timeout = 5", "connect_timeout = -5"))
    msg = one_line_error(run_cli("run", "touch reached", "--config", str(bad)))
    assert f"{bad}:" in msg and "inventory.ssh.connect_timeout" in msg
    assert not any((h.root / "reached").exists() for h in fleet.hosts)


@pytest.mark.parametrize("hosts", ["", ",", " , "])
def test_run_with_an_empty_host_selection_exits_2_and_touches_no_host(fleet, hosts):
    msg = one_line_error(run_cli("run", "touch reached", "--hosts", hosts, "--config", str(fleet.config_path)))
    assert msg.startswith("controlroom: --hosts: "), msg
    assert "names no host" in msg
    assert not any((h.root / "reached").exists() for h in fleet.hosts)


STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"


def deploy_log(fleet: Fleet) -> list[str]:
    res = run_cli("log", "-n", "50", "--config", str(fleet.config_path))
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_run_goes_into_the_deploy_log_with_who_what_how_many_and_the_result(make_fleet):
    fleet = make_fleet(5, "web004=refuse,web005=refuse")
    res = run_cli("run", "uptime", "--config", str(fleet.config_path), env={"SUDO_USER": "mygrant"})
    assert res.returncode == 1, res.stderr
    assert summary(res.stdout) == "5 hosts: 3 ok, 2 refused"
    assert re.fullmatch(rf"{STAMP} \[mygrant\] RUN 'uptime' on 5 hosts: 3 ok, 2 refused", deploy_log(fleet)[-1])


def test_a_long_multi_line_command_is_one_bounded_line_in_the_deploy_log(fleet):
    cmd = "echo one\necho two \x1b[2J\n" + "true; " * 100
    res = run_cli("run", cmd, "--hosts", "web001", "--config", str(fleet.config_path))
    assert res.returncode == 0, res.stderr
    last = deploy_log(fleet)[-1]
    assert re.fullmatch(rf"{STAMP} \[\S+\] RUN 'echo one echo two \^\[\[2J true; true; .*…' on 1 host: 1 ok", last)
    assert len(last) < 300 and "\x1b" not in last


def test_run_works_when_the_deploy_log_cannot_be_opened_and_says_so_in_one_line(fleet):
    (fleet.dir / "not-a-dir").write_text("a file where the state directory should be\n")
    config = fast_config(fleet, lambda text: text.replace('dir = "state"', 'dir = "not-a-dir"'))
    res = run_cli("run", "touch reached", "--config", str(config))
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout) == "10 hosts: 10 ok"
    assert all((h.root / "reached").exists() for h in fleet.hosts)
    warnings = res.stderr.splitlines()
    assert len(warnings) == 1, res.stderr
    assert warnings[0].startswith("controlroom: warning: run not recorded in the deploy log: "), res.stderr


# ------------------------------------------------------------------------------------------- fleet


@pytest.mark.parametrize(
    ("faults", "says"),
    [
        ("bogus", "--faults: cannot read 'bogus'; write HOST=FAULT"),
        ("web001=melt", "--faults: cannot read 'web001=melt'"),
        ("web001=slow:soon", "--faults: 'web001=slow:soon' needs a number"),
        ("web099=refuse", "--faults: no host 'web099' in a fleet of 3"),
    ],
)
def test_fleet_with_bad_faults_exits_2_with_one_line(tmp_path, faults, says):
    msg = one_line_error(run_cli("fleet", "--hosts", "3", "--dir", str(tmp_path / "f"), "--faults", faults))
    assert msg.startswith("controlroom: " + says), msg


def test_fleet_with_no_hosts_exits_2(tmp_path):
    assert one_line_error(run_cli("fleet", "--hosts", "0", "--dir", str(tmp_path / "f"))) == (
        "controlroom: --hosts must be at least 1"
    )


def _read_until(proc: subprocess.Popen, needle: bytes, deadline: float) -> bytes:
    """Read the process's stdout as it comes until needle appears; fail at the deadline, never sleep."""
    seen = b""
    fd = proc.stdout.fileno()
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"no {needle!r} from `controlroom fleet` (exit {proc.poll()}): {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"`controlroom fleet` closed its output: {seen!r}")
            seen += chunk
    return seen


def test_fleet_started_by_hand_serves_each_host_under_its_own_name(tmp_path):
    directory = tmp_path / "fleet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlroom.cli", "fleet", "--hosts", "5", "--dir", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        banner = _read_until(proc, b"ready", time.monotonic() + 60).decode()
        assert f"fleet: config {directory / 'controlroom.toml'}" in banner

        res = run_cli(
            "run", "cat /etc/hostname; echo $HOSTNAME", "--config", str(directory / "controlroom.toml")
        )
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        for host in ["web001", "web002", "web003", "web004", "web005"]:  # each its own block: its own name
            i = lines.index(f"{host} (1): ok")
            assert lines[i + 1:i + 3] == ["    vm", f"    {host}"], res.stdout
        assert summary(res.stdout) == "5 hosts: 5 ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert err == b""


# ------------------------------------------------------------------------------------------- grouped output


@pytest.mark.slow
def test_run_on_150_hosts_with_identical_output_prints_one_group_line(big_fleet):
    res = run_cli("run", "echo vm", "--config", str(big_fleet.config_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:-1] == ["web[001:150] (150): vm"]
    assert summary(res.stdout) == "150 hosts: 150 ok"


def test_run_groups_hosts_by_their_output_and_shows_every_line_of_it(fleet):
    cmd = "echo first; echo second; case $HOSTNAME in web00[1-3]|web007) echo a;; *) echo b >&2;; esac"
    res = run_cli("run", cmd, "--config", str(fleet.config_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:-1] == [
        "web[004:006],web[008:010] (6): ok", "    first", "    second", "    [err] b",
        "web[001:003],web007 (4): ok", "    first", "    second", "    a",
    ]


def test_run_each_prints_one_block_per_host_with_all_its_lines(fleet):
    res = run_cli("run", "--each", "--hosts", "web[001:002]", "echo first; echo $HOSTNAME",
                  "--config", str(fleet.config_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()[:-1]
    assert len(lines) == 6, res.stdout
    for host in ("web001", "web002"):
        i = next(k for k, line in enumerate(lines) if line.startswith(f"{host}  ok "))
        assert HOST_LINE.match(lines[i])["detail"] is None
        assert lines[i + 1:i + 3] == ["    first", f"    {host}"]


def test_failed_hosts_are_grouped_by_their_reason_after_the_hosts_that_went_well(make_fleet):
    fleet = make_fleet(8, ONE_OF_EACH)
    res = run_cli("run", "echo same", "--config", str(fast_config(fleet)))
    assert res.returncode == 1
    lines = res.stdout.splitlines()[:-1]
    assert lines[0] == "web005,web008 (2): same", res.stdout
    assert "web001 (1): refused: connection refused" in lines
    assert "web002 (1): timeout: connect timed out after 1 s" in lines
    assert "web003 (1): exit 1: web003: simulated failure" in lines


def test_host_names_compress_into_patterns_that_hosts_accepts():
    from controlroom.cli.runout import compress
    from controlroom.config import inventory

    names = ["web001", "web002", "web003", "web005", "db1", "web9", "web10", "cache-a"]
    assert compress(names) == "web[001:003],web005,db1,web9,web10,cache-a"
    assert compress(f"web{i:03d}" for i in range(1, 151)) == "web[001:150]"
    assert inventory.select("web[001:003],web005", tuple(f"web{i:03d}" for i in range(1, 8)), {}) == [
        "web001", "web002", "web003", "web005"]

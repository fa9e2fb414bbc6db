"""Text is text on every path of the CLI (issue 15): each error path that carries outside text (a lock's reason, the
holder a host's lease names, a metrics source's error) gets escape sequences, and the bytes the CLI prints hold no
ESC and no BEL: they are shown as visible stand-ins (``^[``, ``^G``), on one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from controlroom.cli.main import main
from tests.hostile_source import HostileSource

HOSTILE = "\x1b]0;pwn\x07\x1b[2J"
SHOWN = "^[]0;pwn^G^[[2J"


def cli_bytes(*args: str, cwd: Path, user: str = "mygrant") -> tuple[int, bytes, bytes]:
    """`controlroom ARGS` as a user runs it; what it printed, as bytes (nothing decoded away)."""
    import os

    env = {**os.environ, "SUDO_USER": user}
    res = subprocess.run([sys.executable, "-m", "controlroom.cli", *args], cwd=cwd, env=env, capture_output=True,
                         stdin=subprocess.DEVNULL, timeout=120)
    return res.returncode, res.stdout, res.stderr


def assert_harmless(*outputs: bytes) -> None:
    for out in outputs:
        assert b"\x1b" not in out and b"\x07" not in out, out


def test_a_lock_reason_with_escapes_is_shown_as_text_when_a_deploy_meets_the_lock(fleet):
    code, out, err = cli_bytes("lock", f"db migration {HOSTILE}", cwd=fleet.dir, user="alice")
    assert code == 0, err
    code, out, err = cli_bytes("deploy", "--yes", cwd=fleet.dir)
    assert code == 3, out + err
    assert_harmless(out, err)
    assert f"db migration {SHOWN}".encode() in err and err.count(b"\n") == 1, err


def test_the_holder_a_hosts_lease_names_is_shown_as_text(fleet):
    for h in fleet.hosts:
        (Path(h.root) / ".controlroom-lease").write_text(f"op-1 journal-x {HOSTILE}\n")
    code, out, err = cli_bytes("deploy", "--yes", cwd=fleet.dir)
    assert code == 3, out + err
    assert_harmless(out, err)
    # a lease with control characters in it is no lease controlroom wrote: its text is shown, visibly
    assert re.search(rf"held by unknown: .*'op-1 journal-x {re.escape(SHOWN)}'".encode(), err), err


def metrics_config(path: Path, url: str) -> None:
    text = path.read_text()
    text += (f'\n[metrics]\nurl = "{url}"\n[metrics.series.errors_5xx]\nquery = "q"\nmax = 5\n')
    path.write_text(text)


def test_an_error_a_metrics_source_sends_is_shown_as_text_by_controlroom_metrics(fleet):
    refusal = json.dumps({"status": "error", "errorType": "bad_data", "error": f"parse error {HOSTILE}"})
    with HostileSource(refusal, status=400) as src:
        metrics_config(fleet.config_path, src.url)
        code, out, err = cli_bytes("metrics", cwd=fleet.dir)
    assert code == 0, err
    assert_harmless(out, err)
    assert out.decode().rstrip().endswith(f"unknown: the source refused the query: parse error {SHOWN}"), out


def test_an_error_a_metrics_source_sends_is_shown_as_text_where_a_deploy_stops_at_its_gate(fleet):
    refusal = json.dumps({"status": "error", "errorType": "bad_data", "error": f"parse error {HOSTILE}"})
    with HostileSource(refusal, status=400) as src:
        metrics_config(fleet.config_path, src.url)
        text = fleet.config_path.read_text()
        # the canary is gated on the series the source refuses
        text = re.sub(r"(\[\[phase\]\]\nname = \"canary\"\n)", r'\1gate = ["errors_5xx < 5"]\n', text, count=1)
        fleet.config_path.write_text(text)
        code, out, err = cli_bytes("deploy", "--yes", "--auto", cwd=fleet.dir)
    assert code == 1, out + err
    assert_harmless(out, err)
    assert f"UNKNOWN (the source refused the query: parse error {SHOWN})".encode() in out, out


def test_the_error_line_of_main_neutralises_what_it_says(capsys, tmp_path):
    bad = tmp_path / f"no{HOSTILE}such.toml"
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and SHOWN in err and err.count("\n") == 1, err

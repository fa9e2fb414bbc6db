"""The one-step stage and `controlroom diff`, run as a user runs them (the CLI in a subprocess, its server, the
simulated fleet over real SSH, the demo's real git repository). Assertions read what the operator sees and what the
hosts hold."""

from __future__ import annotations

import re

import pytest

from controlroom.demo.fleet import Fleet
from tests.cli.test_deploy_cli import cr, log_lines, revisions
from tests.unit.engine.test_rollout import BUDGET_PHASES, NEW, OLD, config_with_phases

STAGE = 'echo building {revision}; for i in 1 2 3; do echo "step $i"; done; echo built > BUILT'


def with_stage(fleet: Fleet, command: str = STAGE, name: str = "staged.toml") -> str:
    text = fleet.config_path.read_text()
    assert "[release]\n" in text
    path = fleet.dir / name
    path.write_text(text.replace("[release]\n", f"[release]\nstage = '''{command}'''\n", 1))
    return str(path)


# --------------------------------------------------------------------------------------------- stage


def test_stage_streams_its_output_records_it_and_then_deploy_goes(fleet):
    cfg = with_stage(fleet)
    res = cr(fleet, "stage", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[:4] == ["  building r2307", "  step 1", "  step 2", "  step 3"]
    assert re.fullmatch(r"STAGE OK r2307 in \d+ m?s", out[-1])
    assert (fleet.dir / "repo" / "BUILT").read_text() == "built\n"  # it ran in [release] repo, on the bastion
    log = log_lines(fleet, "-c", cfg)
    assert any(re.search(r"\[mygrant\] STAGE START r2307$", line) for line in log)
    assert re.search(r"\[mygrant\] STAGE OK r2307 in \d+ m?s$", log[-1])
    deploy = cr(fleet, "deploy", "--yes", "-c", cfg)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert set(revisions(fleet).values()) == {NEW}


def test_the_demo_repos_make_build_stages_in_a_second_or_two(fleet):
    cfg = with_stage(fleet, "make build REV={revision}")
    res = cr(fleet, "stage", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[:3] == ["  building r2307", "  bundling assets", "  built r2307"]
    assert (fleet.dir / "repo" / "build" / "REVISION").read_text() == "r2307\n"
    assert re.fullmatch(r"STAGE OK r2307 in \d+ m?s", res.stdout.splitlines()[-1])


def test_with_a_stage_command_an_unstaged_revision_is_refused_and_force_goes_past_on_the_record(fleet):
    cfg = with_stage(fleet)
    before = revisions(fleet)
    res = cr(fleet, "deploy", "--yes", "-c", cfg)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr == ("controlroom: r2307 has not been staged successfully: run `controlroom stage --revision "
                          "r2307` first, or deploy with --force --reason TEXT\n")
    assert revisions(fleet) == before
    forced = cr(fleet, "deploy", "--yes", "--force", "--reason", "build farm down", "-c", cfg)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert set(revisions(fleet).values()) == {NEW}
    assert any("[mygrant] FORCE r2307 deployed without a successful stage: build farm down" in line
               for line in log_lines(fleet, "-c", cfg))


def test_a_failed_stage_exits_1_says_why_and_the_deploy_stays_refused(fleet):
    cfg = with_stage(fleet, "echo compiling {revision}; echo 'error: no space' >&2; exit 2")
    res = cr(fleet, "stage", "-c", cfg)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "  error: no space" in res.stdout.splitlines()
    assert re.search(r"^STAGE FAILED r2307: exit 2 after \d+ m?s$", res.stdout, re.M)
    assert re.search(r"STAGE FAILED r2307: exit 2 after \d+ m?s$", log_lines(fleet, "-c", cfg)[-1])
    assert cr(fleet, "deploy", "--yes", "-c", cfg).returncode == 2


def test_staging_an_unknown_revision_exits_2_naming_the_nearest_tags(fleet):
    res = cr(fleet, "stage", "--revision", "r2370", "-c", with_stage(fleet))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "unknown revision 'r2370'" in res.stderr and "nearest tags: r2308, r2307, r2306" in res.stderr


def test_stage_without_a_stage_command_is_a_usage_error(fleet):
    res = cr(fleet, "stage")
    assert res.returncode == 2 and "set [release] stage" in res.stderr


def test_the_stage_command_runs_on_stage_host_over_ssh_when_set(fleet):
    cfg = with_stage(fleet, "echo staging {revision} on $(hostname) > STAGED; cat STAGED")
    text = open(cfg).read().replace("[release]\n", '[release]\nstage_host = "web001"\n', 1)
    open(cfg, "w").write(text)
    res = cr(fleet, "stage", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (fleet.dir / "hosts" / "web001" / "STAGED").read_text().startswith("staging r2307 on ")
    assert res.stdout.splitlines()[0].startswith("  staging r2307 on ")


# --------------------------------------------------------------------------------------------- diff


def test_diff_shows_the_commits_files_and_the_diff_from_live_to_staged(fleet):
    assert cr(fleet, "deploy", "--yes", "--revision", OLD).returncode == 0  # the journal now knows what runs
    res = cr(fleet, "diff")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == f"live: r2306 on {len(fleet.hosts)} hosts"
    assert re.fullmatch(r"staged: r2307 \([0-9a-f]{10}\)", out[1])
    assert "1 commit" in out
    assert re.fullmatch(r"  [0-9a-f]{7,}  demo  .+ ago  r2307: video uploads behind a flag|"
                        r"  [0-9a-f]{7,}  demo  just now  r2307: video uploads behind a flag",
                        out[out.index("1 commit") + 1])
    assert "2 files changed, +6 -1" in out
    assert "  +2 -0  lib/video.php" in out and "  +4 -1  upload.php" in out
    assert "+    require 'lib/video.php';" in out and "-<?php // photo uploads" in out
    assert "\x1b" not in res.stdout  # not a terminal: no colour


def test_diff_stat_leaves_out_the_diff_and_a_mixed_fleet_says_so(make_fleet):
    fleet = make_fleet(12)
    cfg = config_with_phases(fleet, BUDGET_PHASES)
    assert cr(fleet, "deploy", "--yes", "--revision", OLD, "-c", str(cfg)).returncode == 0
    text = cfg.read_text()
    assert "steps = [\n" in text
    cfg.write_text(text.replace("steps = [\n", 'steps = [\n    "case {host} in web004|web005) exit 1;; esac",\n', 1))
    assert cr(fleet, "deploy", "--yes", "-c", str(cfg)).returncode == 1  # halts in stage 1: a mixed fleet
    res = cr(fleet, "diff", "--stat", "-c", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "live: r2306 on 9 hosts, r2307 on 3", out[0]
    assert re.fullmatch(r"staged: r2307 \([0-9a-f]{10}\)", out[1])
    assert "  +4 -1  upload.php" in out
    assert not any(line.startswith("+    require") for line in out)


def test_a_stage_command_with_its_placeholder_in_quotes_is_a_config_error(tmp_path):
    from controlroom.config import config
    from controlroom.core.errors import ConfigError

    (tmp_path / "known_hosts").touch()
    path = tmp_path / "c.toml"
    path.write_text('[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
                    '[release]\nstage = "make build REV=\'{revision}\'"\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert "release.stage" in str(e.value) and "inside quotes" in str(e.value)


def test_diff_before_any_deploy_asks_a_host_what_runs(fleet):
    res = cr(fleet, "diff", "--stat")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "live: r2306 (asked web001)"
    assert "1 commit" in out and "2 files changed, +6 -1" in out


def test_diff_colours_only_on_a_terminal_and_a_commits_escape_sequences_stay_text(fleet):
    import os
    import pty
    import subprocess
    import sys

    repo = fleet.dir / "repo"
    env = dict(os.environ, GIT_AUTHOR_NAME="eve\x1b]0;owned\x07", GIT_AUTHOR_EMAIL="e@x",
               GIT_COMMITTER_NAME="eve", GIT_COMMITTER_EMAIL="e@x")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "staging"], check=True)
    (repo / "evil.txt").write_text("line\x1b[2J\n")
    subprocess.run(["git", "-C", str(repo), "add", "evil.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "wipe\x1b[2Jscreen"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "main"], check=True)
    assert cr(fleet, "deploy", "--yes", "--revision", OLD).returncode == 0

    plain = cr(fleet, "diff")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "\x1b" not in plain.stdout and "wipe^[[2Jscreen" in plain.stdout and "+line^[[2J" in plain.stdout

    main, tty = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["SUDO_USER"] = "mygrant"
    p = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "diff"], cwd=fleet.dir, env=env,
                         stdin=subprocess.DEVNULL, stdout=tty, stderr=subprocess.PIPE)
    os.close(tty)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the terminal's other end closed: all was read
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert p.wait(60) == 0, p.stderr.read()
    shown = b"".join(chunks).decode()
    assert "\x1b[32m+line^[[2J\x1b[0m" in shown  # coloured by us; the commit's own escape is text
    assert "\x1b[2J" not in shown.replace("^[[2J", "") and "\x1b]0;" not in shown


def test_stage_output_that_is_not_utf8_has_a_cr_an_escape_or_a_megabyte_line_is_shown_as_text_bounded(fleet):
    # bytes that are not UTF-8, a lone CR inside a line, an escape sequence, then a megabyte without a newline
    command = (r"printf 'caf\351 ok\rFAILED \033[2J\n'; head -c 1000000 /dev/zero | tr '\0' x; echo; "
               "echo after")
    res = cr(fleet, "stage", "-c", with_stage(fleet, command))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.stdout.splitlines()
    assert out[0] == "  caf\\xe9 ok^MFAILED ^[[2J"
    assert out[1].startswith("  xxxx") and out[1].endswith("…") and len(out[1]) <= 1002
    assert out[2] == "  after" and re.fullmatch(r"STAGE OK r2307 in \d+ m?s", out[3]), out[2:]
    assert "\x1b" not in res.stdout and "\r" not in res.stdout


def test_with_a_shared_journal_the_stage_command_never_sees_the_journals_password(fleet, pg_url):
    # PGPASSWORD is the journal's (trust auth here: it is not checked); a stage script that prints its environment
    # streams it to every watcher, so the bastion's local commands do not get it
    cfg = with_stage(fleet, 'echo "pw=${PGPASSWORD:-unset} user=${SUDO_USER}"')
    text = open(cfg).read()
    open(cfg, "w").write(text.replace('dir = "state"', f'dir = "state"\njournal = "{pg_url}"', 1))
    res = cr(fleet, "stage", "-c", cfg, env={"PGPASSWORD": "s3cret"})
    cr(fleet, "server", "stop", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "  pw=unset user=mygrant" in res.stdout.splitlines(), res.stdout
    assert "s3cret" not in res.stdout + res.stderr

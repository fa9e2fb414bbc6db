"""Revisions are names, never options: what reaches git cannot make it write files or read ranges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.sources import git as release
from tests.conftest import run_cli
from tests.waiting import wait_for


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with r2306 (live) and r2307 (staged, on refs/heads/staging)."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "t@example.com")
    git(r, "config", "user.name", "t")
    for rev in ("r2306", "r2307"):
        (r / "REVISION").write_text(rev + "\n")
        git(r, "add", "REVISION")
        git(r, "commit", "-q", "-m", rev)
        git(r, "tag", rev)
    git(r, "branch", "staging")
    return r


def load_with_repo(tmp_path: Path, repo: Path, extra: str = "") -> config.Config:
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(
        '[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
        f'[release]\nrepo = "{repo}"\nstaged = "refs/heads/staging"\n{extra}'
    )
    return config.load(path)


@pytest.mark.parametrize("rev", ["r2307", "4f1c2ab", "release/2024-06-01", "v1.2.3", "hotfix_7"])
def test_a_revision_name_is_accepted_as_written(rev):
    assert release.validate_revision(rev) == rev


@pytest.mark.parametrize(
    ("rev", "says"),
    [
        ("--output=/tmp/x", "must not start with '-'"),
        ("-r2307", "must not start with '-'"),
        ("r2306..r2307", "must not contain '..'"),
        ("r2307; rm -rf /", "may hold only letters, digits"),
        ("r2307\x1b[2J", "may hold only letters, digits"),
        ("r 2307", "may hold only letters, digits"),
        ("", "empty revision"),
        ("r" * 300, "longer than 200 characters"),
    ],
)
def test_a_revision_that_is_not_a_plain_name_is_a_usage_error_in_one_line(rev, says):
    with pytest.raises(UsageError) as e:
        release.validate_revision(rev)
    msg = str(e.value)
    assert e.value.exit_code == 2
    assert says in msg and "\n" not in msg and "\x1b" not in msg
    assert len(msg) < 200


def test_the_staged_revision_is_its_tag(tmp_path, repo):
    assert release.staged_revision(load_with_repo(tmp_path, repo)) == "r2307"


def test_a_tag_that_is_not_a_plain_name_is_shown_as_the_short_hash(tmp_path, repo):
    git(repo, "tag", "-d", "r2307")
    git(repo, "tag", "r2307+hot")  # git allows '+'; our revisions do not
    short = git(repo, "rev-parse", "--short", "staging")
    assert release.staged_revision(load_with_repo(tmp_path, repo)) == short


def test_the_staging_diff_of_a_live_revision_shaped_like_an_option_writes_no_file(tmp_path, repo):
    cfg = load_with_repo(tmp_path, repo)
    assert "REVISION" in release.diff_stat(cfg, "r2306", "r2307")
    target = tmp_path / "x"
    # a host's live_command printed this: git diff would take it as --output=FILE and write there
    assert release.diff_stat(cfg, f"--output={target}", "r2307") == ""
    assert release.diff_stat(cfg, "r2306", f"--output={target}") == ""
    assert not list(tmp_path.glob("x*"))


def test_a_ref_shaped_like_an_option_is_never_read_as_one_by_git(tmp_path, repo):
    target = tmp_path / "out"
    with pytest.raises(ControlroomError):
        release.name_of(repo, f"--output={target}")
    with pytest.raises(ControlroomError):
        release.resolve(repo, "--all")
    assert not list(tmp_path.glob("out*"))


def test_a_config_revision_or_staged_ref_shaped_like_an_option_is_refused_with_file_line_and_key(
    tmp_path, repo
):
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(
        '[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
        f'[release]\nrepo = "{repo}"\nstaged = "--output=/tmp/x"\n'
        '[deploy]\nrevision = "r1..r2"\n'
    )
    res = run_cli("check", "--config", str(path))
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f'controlroom: {path}:7: release.staged: must be a git ref like "refs/heads/staging" (no spaces, no '
        "leading '-'), got '--output=/tmp/x'",
        f"controlroom: {path}:9: deploy.revision: revision 'r1..r2' must not contain '..' (a tag, branch or "
        "commit name like r2307)",
    ]


# --------------------------------------------------------------------------------------------- resolved in the repo


def test_a_tag_branch_or_hash_is_pinned_to_its_commit(tmp_path, repo):
    cfg = load_with_repo(tmp_path, repo)
    head = git(repo, "rev-parse", "r2307")
    assert release.pin(cfg, "r2307") == head
    assert release.pin(cfg, "staging") == head
    assert release.pin(cfg, head[:10]) == head


def test_an_unknown_revision_is_a_usage_error_naming_the_nearest_tags(tmp_path, repo):
    cfg = load_with_repo(tmp_path, repo)
    with pytest.raises(UsageError) as e:
        release.pin(cfg, "r2370")
    assert e.value.exit_code == 2
    assert "unknown revision 'r2370'" in str(e.value) and "nearest tags: r2307, r2306" in str(e.value)


def test_a_deploy_of_an_unknown_revision_exits_2_and_touches_no_host(fleet):
    from tests.cli.test_deploy_cli import cr, revisions

    before = revisions(fleet)
    res = cr(fleet, "deploy", "--revision", "nosuch", "--yes")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "unknown revision 'nosuch'" in res.stderr and "nearest tags:" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert revisions(fleet) == before
    assert not list(fleet.dir.glob("hosts/*/.controlroom-lease"))
    assert "DEPLOY START" not in cr(fleet, "log").stdout


@pytest.mark.slow
def test_a_deploy_pins_the_commit_so_a_tag_moved_mid_deploy_changes_nothing(make_fleet):
    import sqlite3

    from tests.cli.test_deploy_cli import cr
    from tests.unit.engine.test_rollout import config_with_phases

    fleet = make_fleet(4, "web004=slow:2")
    cfg = config_with_phases(fleet, '\n[[phase]]\nname = "all"\nparallel = 4\n')
    repo = fleet.dir / "repo"
    pinned = git(repo, "rev-parse", "r2307")
    env = dict(os.environ, SUDO_USER="mygrant")
    deploy = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "-c", str(cfg)],
                              cwd=fleet.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "DEPLOY START" in cr(fleet, "log", "-c", str(cfg)).stdout, 60, "DEPLOY START in the log",
             proc=deploy, every=0.05)
    git(repo, "tag", "-f", "r2307", "r2308")  # moved while web004 is still on its slow step
    out, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 0, out + err
    db = sqlite3.connect(fleet.dir / "state" / "journal.db")
    assert db.execute("SELECT revision, commit_hash FROM rollouts").fetchall() == [("r2307", pinned)]

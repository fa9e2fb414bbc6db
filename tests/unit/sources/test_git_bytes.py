"""Git is bytes: hostile repositories (file names and contents that are not UTF-8, a lone CR inside a changed line,
escape sequences and CRs in a commit's subject and author), a diff too long to read whole, a git that hangs, and
revisions the journal or a host names that git no longer has. Each runs real git on a repository the test makes,
through `controlroom diff`, `diff --stat` and the app's staging diff pane, and reads what the operator would."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from controlroom.cli import diff as diffcli
from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.engine.live import live_counts
from controlroom.journal.journal import Journal
from controlroom.sources import git as release
from controlroom.sources import stagediff
from tests.app.test_app_staging import SIZE, drawn, make_app, pane_of, until
from tests.cli.test_deploy_cli import cr
from tests.waiting import wait_for

NAME = b"caf\xe9\xff.txt"  # a file name that is not UTF-8


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    base = {"GIT_AUTHOR_NAME": "ann", "GIT_AUTHOR_EMAIL": "ann@x", "GIT_COMMITTER_NAME": "ann",
            "GIT_COMMITTER_EMAIL": "ann@x", "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          env={**base, **(env or {})}).stdout.decode(errors="replace").strip()


def commit_on_staging(repo: Path, files: dict[bytes, bytes], message: bytes, author: str = "ann") -> None:
    """One commit on the staging branch (what `diff` compares with the live r2306), message kept byte for byte."""
    git(repo, "checkout", "-q", "staging")
    for name, data in files.items():
        Path(os.fsdecode(os.fsencode(repo) + b"/" + name)).write_bytes(data)
    git(repo, "add", "-A")
    msg = repo.parent / "message"
    msg.write_bytes(message)
    git(repo, "commit", "-q", "--cleanup=verbatim", "-F", str(msg), env={"GIT_AUTHOR_NAME": author})
    git(repo, "checkout", "-q", "main")


def record_live(fleet, revision: str, hosts: int = 10) -> None:
    """The journal's record of an earlier deploy: every host on ``revision``."""
    j = Journal.open(Path(config.load(fleet.config_path).state.dir))
    try:
        for i in range(hosts):
            j.record(ev.HostStateChanged(0, host=f"web{i + 1:03d}", phase=0, state=ev.DONE, revision=revision))
    finally:
        j.close()


def section(out: list[str], title: str) -> list[str]:
    """The indented rows under a title line ('2 commits'), up to the blank line."""
    i = out.index(title) + 1
    rows = []
    while i < len(out) and out[i].startswith("  "):
        rows.append(out[i])
        i += 1
    return rows


# --------------------------------------------------------------------------------------------- controlroom diff


def test_diff_of_a_file_whose_name_and_content_are_not_utf8_shows_the_bytes_as_escapes(fleet):
    commit_on_staging(fleet.dir / "repo", {NAME: b"caf\xe9 au lait\n"}, b"add the menu\n")
    record_live(fleet, "r2306")
    res = cr(fleet, "diff")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert "  +1 -0  caf\\xe9\\xff.txt" in out
    assert "+++ b/caf\\xe9\\xff.txt" in out and "+caf\\xe9 au lait" in out
    stat = cr(fleet, "diff", "--stat")
    assert stat.returncode == 0, stat.stdout + stat.stderr
    assert "  +1 -0  caf\\xe9\\xff.txt" in stat.stdout.splitlines() and "Traceback" not in stat.stderr


def test_a_lone_cr_in_a_changed_line_a_subject_or_an_author_forges_no_line_and_no_commit_row(fleet):
    repo = fleet.dir / "repo"
    forged = b"fix\r  deadbee  root  just now  approved by security"
    commit_on_staging(repo, {b"notes.txt": b"one\rDEPLOY OK r2307\ntwo\n"}, forged + b" \x1b[2J\n",
                      author="eve\x1b[31m\rmallory")
    record_live(fleet, "r2306")
    for args in (("diff",), ("diff", "--stat")):
        res = cr(fleet, *args)
        assert res.returncode == 0, res.stdout + res.stderr
        out = res.stdout.splitlines()
        rows = section(out, "2 commits")
        assert len(rows) == 2, rows  # the CR forged no third row
        assert any("eve^[[31m^Mmallory" in r and r.endswith("fix^M  deadbee  root  just now  approved by security "
                                                               "^[[2J") for r in rows), rows
        assert "\x1b" not in res.stdout and "\r" not in res.stdout
    out = cr(fleet, "diff").stdout.splitlines()
    assert "+one^MDEPLOY OK r2307" in out and "+two" in out
    assert not any(line.startswith("DEPLOY OK") for line in out)  # no line of the diff's own making


def test_a_live_revision_git_no_longer_has_is_shown_by_its_name(fleet):
    record_live(fleet, "r2299")  # deployed once; its tag since deleted and the history gc'd
    res = cr(fleet, "diff")
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "live: r2299 on 10 hosts"
    assert out[1].startswith("staged: r2307 (")
    assert out[2].startswith("git has no r2299 any more in ") and "nothing to compare" in out[2]
    assert res.stderr == ""


def test_a_live_revision_a_host_names_that_git_lacks_is_shown_by_its_name(fleet):
    for h in fleet.hosts:
        (Path(h.root) / "REVISION").write_text("r2299\n")  # the hosts run a build of a branch since deleted
    res = cr(fleet, "diff", "--stat")
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "live: r2299 (asked web001)"
    assert out[2].startswith("git has no r2299 any more")


# --------------------------------------------------------------------------------------------- bounds


def test_a_diff_longer_than_the_cap_is_cut_and_says_so(fleet, monkeypatch, capsys):
    repo = fleet.dir / "repo"
    commit_on_staging(repo, {b"big.txt": b"".join(b"line %d\n" % i for i in range(20000))}, b"big\n")
    monkeypatch.setattr(stagediff, "MAX_PATCH_BYTES", 50_000)
    record_live(fleet, "r2306")
    cfg = config.load(fleet.config_path)
    d = stagediff.load(cfg, counts=live_counts(cfg))  # the live side by the journal's record, as `diff` reads it
    assert len(d.lines) < 6000  # what was read, not the whole of it
    assert d.kinds[-1] == stagediff.NOTE and d.lines[-1].startswith("… the diff is cut here, after ")
    assert "`git diff r2306 " in d.lines[-1] and d.cut == [f"diff cut after {len(d.lines) - 1} lines"]
    assert "  +20000 -0  big.txt" in [f"  +{f.added} -{f.removed}  {f.path}" for f in d.files]  # numstat: whole
    # and `controlroom diff` says so, above the commits and where the diff ends
    assert diffcli.cmd_diff(config.load(fleet.config_path), argparse.Namespace(revision=None, stat=False,
                                                                                 json=False)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == f"shown in part: {d.cut[0]}", out[:3]
    assert out[-1] == d.lines[-1]


def test_a_git_that_hangs_is_stopped_at_its_deadline_with_what_it_started(fleet, monkeypatch, tmp_path):
    repo = fleet.dir / "repo"
    pid = tmp_path / "textconv.pid"
    # a textconv driver that never ends: git waits on it, and so would we
    git(repo, "config", "diff.slow.textconv", f"sh -c 'echo $$ > {pid}; exec sleep 600' --")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("*.php diff=slow\n")
    monkeypatch.setattr(release, "GIT_TIMEOUT", 2.0)
    record_live(fleet, "r2306")
    cfg = config.load(fleet.config_path)
    try:
        stagediff.load(cfg, counts=live_counts(cfg))
    except ControlroomError as e:
        assert "git diff did not finish within 2 s and was stopped" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("a hanging git was waited for")
    sleeper = int(pid.read_text())

    def gone() -> bool:
        try:  # gone, or a zombie nobody reaped yet; it may go between any two reads of /proc
            return Path(f"/proc/{sleeper}/stat").read_text().split(")")[-1].split()[:1] == ["Z"]
        except OSError:
            return True

    wait_for(gone, 10, "the textconv that git started stopped too")


# --------------------------------------------------------------------------------------------- the pane


async def test_the_pane_shows_a_hostile_commit_as_text_one_row_one_line(make_fleet):
    fleet = make_fleet(3)
    repo = fleet.dir / "repo"
    commit_on_staging(repo, {NAME: b"one\rtwo \x1b[2J\n"}, b"wipe\r  deadbee  root  forged row\n",
                      author="eve\x1b]0;owned\x07sam")
    app = make_app(fleet.config_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        lines = pane.view.lines
        rows = [line for line in lines[1:lines.index("")]]
        assert lines[0] == "2 commits" and len(rows) == 2, lines[:4]
        assert any("eve^[]0;owned^Gsam" in r and r.endswith("wipe^M  deadbee  root  forged row") for r in rows), rows
        assert "+one^Mtwo ^[[2J" in lines and "+++ b/caf\\xe9\\xff.txt" in lines
        assert any(line.endswith("caf\\xe9\\xff.txt") and line.startswith("  +1 -0") for line in lines)
        view = pane.view
        view.focus()
        await pilot.press("slash", *"one^M", "enter")
        assert "+one^Mtwo ^[[2J" in drawn(pane)
        assert "cannot read" not in pane.head_text


async def test_the_pane_names_a_live_revision_git_no_longer_has(make_fleet):
    fleet = make_fleet(3)
    record_live(fleet, "r2299", hosts=3)
    app = make_app(fleet.config_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        head = pane.head_text.splitlines()
        assert head[0] == "live: r2299 on 3 hosts"
        assert head[1].startswith("staged: r2307 (") and "commit" not in head[1]
        assert str(pane.border_subtitle) == "r2299 → r2307"
        assert pane.view.lines[0].startswith("git has no r2299 any more") and "?" not in pane.head_text


async def test_the_pane_says_a_diff_longer_than_the_cap_is_shown_in_part(make_fleet, monkeypatch):
    fleet = make_fleet(3)
    commit_on_staging(fleet.dir / "repo", {b"big.txt": b"".join(b"line %d\n" % i for i in range(20000))}, b"big\n")
    monkeypatch.setattr(stagediff, "MAX_PATCH_BYTES", 50_000)
    app = make_app(fleet.config_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        assert "· shown in part: diff cut after " in pane.head_text.splitlines()[1]
        pane.view.focus()
        await pilot.press("end")
        await until(pilot, lambda: drawn(pane)[-1].startswith("… the diff is cut here, after "), "the cut's line")

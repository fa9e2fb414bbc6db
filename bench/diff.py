"""The staging diff pane on a big diff, by hand (never in CI): `python bench/diff.py [--lines 20000] [--rounds 5]`.

A real git repository in a temporary directory gets a commit that adds LINES lines (plus a small change, so the
diff has several files and hunks). For each round this measures

  git read      stagediff.load: git log, git diff --numstat, git diff, every line cleaned, and the files' lexers
                found (the app does this in a thread, off its event loop)
  first screen  from handing the loaded diff to the pane (StagingDiffPane.show) to the first frame drawn with it,
                in a headless Textual app at 160x48 with the pane alone (the line API builds only the visible lines)
  page down     one page of scrolling (no animation), to its frame (median of 50 pages), and the lines built
                for it

and prints the medians. The app's own start, the control-room server and the revision poll are not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402

from controlroom.config import config  # noqa: E402
from controlroom.sources import stagediff  # noqa: E402
from widgets.diff_view import prepare_lexers  # noqa: E402
from widgets.staging_diff import StagingDiffPane  # noqa: E402

SIZE = (160, 48)


def make_repo(root: Path, lines: int) -> Path:
    repo = root / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="bench",
               GIT_COMMITTER_EMAIL="b@x")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main")
    (repo / "index.php").write_text("<?php echo 'hello'; ?>\n")
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    git("tag", "base")
    (repo / "big.php").write_text("".join(f"<?php $line_{i} = {i}; // a generated line ?>\n" for i in range(lines)))
    (repo / "index.php").write_text("<?php echo 'hello, world'; ?>\n")
    git("add", "-A")
    git("commit", "-q", "-m", f"{lines} generated lines")
    git("tag", "big")
    return repo


def write_config(root: Path, repo: Path) -> Path:
    (root / "known_hosts").write_text("")
    path = root / "controlroom.toml"
    path.write_text(f"""
[inventory]
hosts = ["web1"]
[inventory.ssh]
known_hosts = "known_hosts"
[release]
repo = "{repo}"
staged = "big"
[state]
dir = "{root / 'state'}"
[deploy]
steps = ["true"]
[[phase]]
name = "all"
size = "100%"
""")
    return path


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StagingDiffPane(id="staging-diff")

    def on_staging_diff_pane_stale(self, message: StagingDiffPane.Stale) -> None:
        pass  # the bench hands the pane its diff itself


async def one_round(d: stagediff.StagingDiff) -> tuple[float, float, int]:
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(StagingDiffPane)
        await pilot.pause()
        start = time.perf_counter()
        pane.show(d)
        await pilot.pause()  # the frame with the diff on it is drawn
        first = time.perf_counter() - start
        view = pane.view
        view.focus()
        before = view.renders
        pages = []
        for _ in range(50):
            t = time.perf_counter()
            view.scroll_page_down(animate=False)  # what pagedown does, less the smooth-scroll animation
            await pilot.pause()
            pages.append(time.perf_counter() - t)
        built = (view.renders - before) / 50
    return first, statistics.median(pages), round(built)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        root = Path(tmp)
        cfg = config.load(write_config(root, make_repo(root, args.lines)))
        loads, firsts, pages, built = [], [], [], 0
        d = None
        for _ in range(args.rounds):
            t = time.perf_counter()
            d = stagediff.load(cfg, counts=Counter({"base": 1}))
            prepare_lexers(d.lines)  # as the app does, in the same thread
            loads.append(time.perf_counter() - t)
            first, page, built = asyncio.run(one_round(d))
            firsts.append(first)
            pages.append(page)
    assert d is not None
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; a diff of {len(d.lines)} lines ({len(d.files)} files), "
          f"{args.rounds} rounds, medians")
    print(f"  git read (stagediff.load, in a thread in the app)  {statistics.median(loads) * 1000:7.1f} ms")
    print(f"  first screen (show -> frame drawn)                 {statistics.median(firsts) * 1000:7.1f} ms")
    print(f"  page down (scroll -> frame), lines built per page     {statistics.median(pages) * 1000:7.1f} ms, {built}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo's git repository: a live revision r2306, a staged one, r2307, on the staging branch, r2308 after it, and
r2305, the revision the demo's past deploy replaced."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FILES_LIVE = {
    "index.php": "<?php echo 'Hello from Flickr-ish'; ?>\n",
    "upload.php": "<?php // photo uploads\nrequire 'lib/upload.php';\n",
    # the demo's stage command: `[release] stage = "make build REV={revision}"` takes a second or two
    "Makefile": "build:\n\t@echo building $(REV)\n\t@sleep 0.7\n\t@echo bundling assets\n\t@sleep 0.7\n"
    "\t@mkdir -p build && echo $(REV) > build/REVISION\n\t@echo built $(REV)\n",
}
FILES_STAGED = {
    "upload.php": "<?php // photo and video uploads\nrequire 'lib/upload.php';\nif (flag('enable_feature_video')) {\n"
    "    require 'lib/video.php';\n}\n",
    "lib/video.php": "<?php // video transcoding queue\nfunction enqueue_video($id) { return queue('video', $id); }\n",
}

PAST_AT, LIVE_AT, STAGED_AT, NEXT_AT = "2026-11-13T10:00:00+0000", "2026-11-20T10:00:00+0000", "2026-11-24T15:00:00+0000", "2026-11-25T09:00:00+0000"


def make_demo_repo(path: Path, live: str = "r2306", staged: str = "r2307") -> None:
    """Create (once) a small real git repository with two tagged revisions (and r2305, the demo's past deploy's
    previous revision, and r2308)."""
    if (path / ".git").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="demo", GIT_AUTHOR_EMAIL="demo@controlroom.invalid",
               GIT_COMMITTER_NAME="demo", GIT_COMMITTER_EMAIL="demo@controlroom.invalid")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, env=env, timeout=30)

    def at(when: str) -> None:  # fixed commit times: the same hashes in every demo (and in the layout snapshots)
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when

    git("init", "-q", "-b", "main")
    for rev, files, when in ((live, FILES_LIVE, LIVE_AT), (staged, FILES_STAGED, STAGED_AT)):
        at(when)
        for name, text in files.items():
            f = path / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        git("add", "-A")
        git("commit", "-q", "-m", f"{rev}: {'video uploads behind a flag' if rev == staged else 'photo uploads'}")
        git("tag", rev)
        if rev == live:
            git("branch", "production")
    git("branch", "staging")
    # one revision past the staged one, off to the side (the staging branch stays on r2307): the tests that
    # deploy another revision name it
    git("checkout", "-q", "-b", "next")
    (path / "NEXT").write_text("r2308\n")
    at(NEXT_AT)
    git("add", "-A")
    git("commit", "-q", "-m", "r2308: next release")
    git("tag", "r2308")
    git("checkout", "-q", "main")
    # r2305, what the demo's past deploy (cli/demopast.py) replaced: a commit of its own, not r2306's parent (the
    # hashes of r2306 and r2307 stay as they were), so `controlroom stats` counts that deploy's change (r2306's
    # commit) instead of saying "r2305 is not in the repository"
    at(PAST_AT)
    empty = subprocess.run(["git", "-C", str(path), "mktree"], input=b"", check=True, capture_output=True, env=env,
                           timeout=30).stdout.decode().strip()
    past = subprocess.run(["git", "-C", str(path), "commit-tree", empty, "-m", "r2305: before the demo"],
                          check=True, capture_output=True, env=env, timeout=30).stdout.decode().strip()
    git("tag", "r2305", past)

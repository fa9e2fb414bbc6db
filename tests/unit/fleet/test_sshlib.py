"""controlroom.fleet.sshlib: asyncssh imported without find_library's compiler runs, finding what it found."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _import_in_child(tmp_path, **env) -> tuple[dict, bool]:
    """Import the SSH pool in a fresh interpreter whose PATH starts with a gcc and an ld that leave a mark."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    mark = tmp_path / "compiler-ran"
    for tool in ("gcc", "cc", "ld"):
        (bin_dir / tool).write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    code = ("import json, ctypes.util; import controlroom.fleet.ssh; import asyncssh.crypto.umac as u; "
            "import asyncssh.crypto.pq as p; "
            "print(json.dumps({'nettle': u._nettle_lib, 'mlkem': p.mlkem_available}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), mark.exists()


def test_asyncssh_is_imported_without_running_a_compiler_and_finds_the_libraries_ldconfig_lists(tmp_path):
    import ctypes.util

    found, compiler_ran = _import_in_child(tmp_path)
    assert not compiler_ran
    assert found["nettle"] == ctypes.util.find_library("nettle")  # what the full search finds, found the same


def test_with_ld_library_path_set_the_full_search_runs_as_asyncssh_would(tmp_path):
    # the full search is the only one that reads LD_LIBRARY_PATH's directories: kept for whoever sets it (and
    # this shows the first test's mark would be made if the compiler ran)
    _, compiler_ran = _import_in_child(tmp_path, LD_LIBRARY_PATH=str(tmp_path))
    assert compiler_ran

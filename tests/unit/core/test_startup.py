"""core/startup.py: `controlroom` imports with the garbage collector off, and every command has it on again once its
start-up is done (the server once it listens, a deploy once its server is begun, the rest before they run). Each
runs in its own interpreter: the collector of the test process is not ours to turn off."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def python(code: str, cwd=REPO) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_collecting_after_importing_turns_the_collector_on_and_one_turned_off_by_someone_else_stays_off():
    assert python("import gc; from controlroom.core import startup as s; s.importing(); a = gc.isenabled(); "
                  "s.collecting(); b = gc.isenabled(); s.collecting(); "
                  "print(a, b, gc.isenabled(), gc.get_freeze_count() > 0)") == ["False", "True", "True", "True"]
    assert python("import gc; gc.disable(); from controlroom.core import startup as s; s.importing(); "
                  "s.collecting(); print(gc.isenabled())") == ["False"]


# each command's body replaced by a print of the collector's state at the moment it would begin its work
PROBE = """
import gc, sys
{patch}
sys.argv = ["controlroom", *{argv!r}]
from controlroom.cli.main import main
code = main()
print("after", gc.isenabled())
"""


def test_every_command_runs_with_the_collector_on_and_the_server_has_it_on_once_it_listens(make_fleet):
    fleet = make_fleet(2)
    cases = {
        "serve": ("import controlroom.server.server as s\n"
                  "async def serve(self): print('serving', gc.isenabled())\n"
                  "s.Server.serve = serve", ["serve", "--quiet", "--idle", "1"]),
        "log": ("import controlroom.cli.deploy as d\n"
                "d.cmd_log = lambda cfg, args: print('log', gc.isenabled()) or 0", ["log"]),
        "deploy": ("import controlroom.cli.start as st, controlroom.cli.session as se\n"
                   "st.early = lambda cmd, args: None\n"
                   "st.finish = lambda cmd, args, begun, cfg: print('begun', gc.isenabled())\n"
                   "se.cmd_deploy = lambda cfg, args, starting: print('deploy', gc.isenabled()) or 0",
                   ["deploy", "--yes"]),
    }
    for name, (patch, argv) in cases.items():
        said = [w for w in python(PROBE.format(patch=patch, argv=argv), cwd=fleet.dir)
                if w in ("serving", "log", "begun", "deploy", "after", "True", "False")]  # not "listening on ..."
        expected = {"serve": ["serving", "True"], "log": ["log", "True"],
                    "deploy": ["begun", "False", "deploy", "True"]}[name]
        assert said == [*expected, "after", "True"], (name, said)

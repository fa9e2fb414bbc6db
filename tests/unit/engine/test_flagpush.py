"""The flag push on its own (controlroom.engine.flagpush.FlagService), as the server runs it: a change pushed over a warm
pool to a small simulated fleet with one host that refuses connections, a receipt from each host, the straggler
retried, the journal keeping every receipt."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core.identity import Actor
from controlroom.engine.flagpush import CONFIRMED, FAILED, FlagConflict, FlagService
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.flags import FlagHistory
from controlroom.journal.journal import Journal


def flags_on(host) -> dict:
    return tomllib.loads((Path(host.root) / "flags.toml").read_text())


@pytest.fixture
async def service(make_fleet):
    """A FlagService over a 4-host fleet where web003 refuses connections; closed with its pool and journal."""
    fleet = make_fleet(4, faults="web003=refuse")
    cfg = config.load(fleet.config_path)
    pool = SSHPool(cfg.ssh, cfg.hosts)
    journal = Journal.open(cfg.state.dir)
    svc = FlagService(cfg, pool, journal, backoff=(60.0, 60.0))  # a retry would not come before the test ends
    svc.start()
    yield fleet, svc
    await svc.close()
    await pool.close()
    journal.close()


async def test_a_kill_switch_lands_on_every_host_that_answers_and_the_refusing_one_is_named_and_retried(service):
    fleet, svc = service

    out = await svc.change("new_search", "off", Actor("alice"), reason="search is slow")

    assert (out["old"], out["new"], out["version"]) == ("on", "off", 1)
    assert (out["confirmed"], out["total"]) == (3, 4)
    assert [(h, cls) for h, cls, _ in out["failed"]] == [("web003", "refused")]
    for h in fleet.hosts:
        if h.name == "web003":
            assert not (Path(h.root) / "flags.toml").exists()
            continue
        f = flags_on(h)
        assert f["version"] == 1 and f["changed_by"] == "alice" and f["flags"]["new_search"] == {"enabled": "off"}
    got = {h: (r.status, r.version, r.cls) for h, r in svc.receipts.items()}
    assert got == {"web001": (CONFIRMED, 1, ""), "web002": (CONFIRMED, 1, ""), "web003": (FAILED, 1, "refused"),
                   "web004": (CONFIRMED, 1, "")}
    assert svc.retrying == ["web003"]
    assert svc.fleet_receipt(1) == {"confirmed": 3, "total": 4, "failed": [["web003", "refused",
                                                                            svc.receipts["web003"].reason]]}


async def test_every_hosts_receipt_is_in_the_journal_for_the_next_server(service):
    fleet, svc = service
    await svc.change("beehive", "off", Actor("bob"), reason="sheds load")

    later = FlagHistory(Journal.open(config.load(fleet.config_path).state.dir))  # what the next server reads
    kept = {h: (r.status, r.version) for h, r in later.receipts().items()}

    assert kept == {"web001": (CONFIRMED, 1), "web002": (CONFIRMED, 1), "web003": (FAILED, 1),
                    "web004": (CONFIRMED, 1)}
    change = later.changes("beehive", limit=1)[0]
    assert (change["user"], change["reason"], change["version"]) == ("bob", "sheds load", 1)


async def test_a_change_decided_on_an_older_version_of_the_flag_is_refused_naming_who_changed_it(service):
    fleet, svc = service
    await svc.change("new_search", "off", Actor("alice"), expect=0)

    with pytest.raises(FlagConflict, match=r"new_search was changed by alice at .* after you looked at version 0"):
        await svc.change("new_search", "on", Actor("bob"), expect=0)

    assert {flags_on(h)["flags"]["new_search"]["enabled"] for h in fleet.hosts if h.name != "web003"} == {"off"}


async def test_a_push_to_named_hosts_writes_only_those(service):
    fleet, svc = service
    out = await svc.change("beehive", "off", Actor("alice"), hosts=["web001"])
    assert (out["confirmed"], out["total"], out["failed"]) == (1, 1, [])
    assert flags_on(fleet.hosts[0])["flags"]["beehive"] == {"enabled": "off"}
    assert not (Path(fleet.hosts[1].root) / "flags.toml").exists()

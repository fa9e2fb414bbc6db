"""Hosts, groups and phases as the operator writes them in controlroom.toml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controlroom.config import config, inventory
from controlroom.config.inventory import PatternError, PhaseSpec, expand, plan_phases, select
from controlroom.core.errors import ConfigError
from tests.conftest import run_cli


def load(tmp_path: Path, body: str) -> config.Config:
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(textwrap.dedent(body) + '\n[inventory.ssh]\nknown_hosts = "known_hosts"\n')
    return config.load(path)


def hosts_of(names: list[str]) -> list[inventory.Host]:
    return [inventory.Host(name=n) for n in names]


# ------------------------------------------------------------------------------------------- patterns


def test_zero_padded_range_keeps_its_width():
    names = expand("web[001:150].example.com")
    assert len(names) == 150
    assert names[:2] == ["web001.example.com", "web002.example.com"]
    assert names[98:100] == ["web099.example.com", "web100.example.com"]
    assert names[-1] == "web150.example.com"


def test_unpadded_range_counts_plainly():
    assert expand("db[8:11]") == ["db8", "db9", "db10", "db11"]


def test_several_ranges_in_one_name_multiply_out_in_order():
    assert expand("r[1:2]-n[01:03]") == ["r1-n01", "r1-n02", "r1-n03", "r2-n01", "r2-n02", "r2-n03"]


def test_name_without_a_range_is_itself():
    assert expand("bastion-mud.example.com") == ["bastion-mud.example.com"]


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("web[010:001]", "runs backwards; write [001:010]"),
        ("web[1-3]", "a range is written [001:150]"),
        ("web 01", "no spaces allowed"),
        ("", "empty host name"),
        ("web$01", "use letters, digits"),
    ],
)
def test_bad_pattern_says_what_is_wrong_and_which_key(pattern, says):
    with pytest.raises(PatternError) as e:
        expand(pattern, "inventory.groups.web.hosts")
    assert says in str(e.value)
    assert e.value.key == "inventory.groups.web.hosts"


# ------------------------------------------------------------------------------------------- the inventory


def test_explicit_list_keeps_the_order_written(tmp_path):
    cfg = load(tmp_path, '[inventory]\nhosts = ["zeta", "alpha", "mid[1:2]"]')
    assert [h.name for h in cfg.hosts] == ["zeta", "alpha", "mid1", "mid2"]
    assert cfg.groups["default"] == ("zeta", "alpha", "mid1", "mid2")
    assert cfg.groups["all"] == cfg.groups["default"]


def test_named_groups_carry_their_colo(tmp_path):
    cfg = load(
        tmp_path,
        """\
        [inventory.groups.web]
        hosts = ["web[01:03]"]
        colo = "mud"

        [inventory.groups.photos]
        hosts = ["photos1", "photos2"]
        colo = "sp1"

        [inventory.groups.tools]
        hosts = ["tools1"]
        """,
    )
    assert cfg.groups["web"] == ("web01", "web02", "web03")
    assert cfg.groups["photos"] == ("photos1", "photos2")
    assert cfg.groups["all"] == ("web01", "web02", "web03", "photos1", "photos2", "tools1")
    assert {h.name: (h.group, h.colo) for h in cfg.hosts} == {
        "web01": ("web", "mud"),
        "web02": ("web", "mud"),
        "web03": ("web", "mud"),
        "photos1": ("photos", "sp1"),
        "photos2": ("photos", "sp1"),
        "tools1": ("tools", None),
    }


def test_per_host_overrides_change_only_that_host(tmp_path):
    cfg = load(
        tmp_path,
        """\
        [inventory.groups.web]
        hosts = ["web[01:04]"]
        colo = "mud"

        [inventory.host]
        web02 = { address = "10.1.0.2", port = 2222 }
        web03 = { user = "root", colo = "sp1" }

        [inventory.host.web04]
        port = 22022
        """,
    )
    assert cfg.host("web01") == inventory.Host("web01", group="web", colo="mud")
    assert cfg.host("web02") == inventory.Host(
        "web02", address="10.1.0.2", port=2222, group="web", colo="mud"
    )
    assert cfg.host("web03") == inventory.Host("web03", user="root", group="web", colo="sp1")
    assert cfg.host("web04").port == 22022


# ------------------------------------------------------------------------------------------- phases


def test_phases_by_count_and_percent_with_the_last_taking_the_rest():
    names = expand("web[001:150]")
    specs = [
        PhaseSpec("canary", 2),
        PhaseSpec("stage 1", "10%", max_failed=1),
        PhaseSpec("stage 2", "100%", max_failed="2%"),
    ]
    canary, stage1, stage2 = plan_phases(specs, hosts_of(names), {"all": tuple(names)})
    assert canary.hosts == ("web001", "web002")
    assert stage1.hosts == tuple(names[2:17])
    assert stage2.hosts == tuple(names[17:])
    assert (len(canary.hosts), len(stage1.hosts), len(stage2.hosts)) == (2, 15, 133)
    assert stage2.max_failed == 2  # 2% of 133, rounded down: a budget never grows by rounding
    assert stage1.parallel == 15


def test_small_percentage_still_gets_one_host():
    names = expand("web[1:5]")
    first, rest = plan_phases([PhaseSpec("one", "1%"), PhaseSpec("rest", None)], hosts_of(names), {})
    assert first.hosts == ("web1",)
    assert rest.hosts == ("web2", "web3", "web4", "web5")


def test_named_canary_hosts_come_first_and_are_not_deployed_twice():
    names = expand("web[01:10]")
    groups = {"all": tuple(names)}
    specs = [
        PhaseSpec("canary", None, hosts=("web07", "web03")),
        PhaseSpec("stage 1", 4),
        PhaseSpec("rest", None),
    ]
    canary, stage1, rest = plan_phases(specs, hosts_of(names), groups)
    assert canary.hosts == ("web07", "web03")  # in the order the operator named them
    assert stage1.hosts == ("web01", "web02", "web04", "web05")
    assert rest.hosts == ("web06", "web08", "web09", "web10")
    everyone = canary.hosts + stage1.hosts + rest.hosts
    assert sorted(everyone) == names


def test_named_hosts_plus_a_size_fill_up_from_the_inventory():
    names = expand("web[01:10]")
    canary, _ = plan_phases(
        [PhaseSpec("canary", 3, hosts=("web10",)), PhaseSpec("rest", None)],
        hosts_of(names),
        {"all": tuple(names)},
    )
    assert canary.hosts == ("web10", "web01", "web02")


def test_a_group_can_be_a_phase():
    names = ["web1", "web2", "photos1", "photos2", "photos3"]
    groups = {"web": ("web1", "web2"), "photos": ("photos1", "photos2", "photos3"), "all": tuple(names)}
    first, rest = plan_phases(
        [PhaseSpec("photos", None, hosts=("photos",)), PhaseSpec("rest", None)], hosts_of(names), groups
    )
    assert first.hosts == ("photos1", "photos2", "photos3")
    assert rest.hosts == ("web1", "web2")


def test_planning_is_deterministic(tmp_path):
    body = """\
    [inventory.groups.a]
    hosts = ["a[01:20]"]
    [inventory.groups.b]
    hosts = ["b[01:20]"]

    [[phase]]
    name = "canary"
    hosts = ["b07", "a13"]

    [[phase]]
    name = "stage 1"
    size = "25%"

    [[phase]]
    name = "stage 2"
    """
    first = load(tmp_path, body).phases
    for _ in range(3):
        assert load(tmp_path, body).phases == first


def test_host_named_by_two_phases_is_refused():
    names = expand("web[01:05]")
    with pytest.raises(PatternError) as e:
        plan_phases(
            [PhaseSpec("canary", None, hosts=("web01",)), PhaseSpec("rest", None, hosts=("web0*",))],
            hosts_of(names),
            {"all": tuple(names)},
        )
    assert e.value.key == "phase[1].hosts"
    assert "'web01' is already named by an earlier phase" in str(e.value)


def test_phase_naming_an_unknown_host_is_refused_with_the_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(
            tmp_path,
            '[inventory]\nhosts = ["web[01:05]"]\n[[phase]]\nname = "canary"\nhosts = ["web09"]\n'
            '[[phase]]\nname = "rest"',
        )
    assert ":5: phase[0].hosts: 'web09' matches no host or group" in str(e.value)


def test_last_phase_asking_for_more_hosts_than_are_left_is_refused():
    names = expand("web[01:05]")
    with pytest.raises(PatternError) as e:
        plan_phases([PhaseSpec("canary", 2), PhaseSpec("rest", 4)], hosts_of(names), {})
    assert e.value.key == "phase[1].size"
    assert "asks for 4 hosts but only 3 are left" in str(e.value)


def test_percentage_failure_budget_is_of_the_phase():
    names = expand("web[001:150]")
    _, rest = plan_phases(
        [PhaseSpec("canary", 50), PhaseSpec("rest", None, max_failed="10%")], hosts_of(names), {}
    )
    assert rest.max_failed == 10


# ------------------------------------------------------------------------------------------- --hosts


NAMES = tuple(expand("web[001:012].example.com")) + ("db1.example.com", "db2.example.com")
GROUPS = {"web": NAMES[:12], "db": NAMES[12:], "all": NAMES}


def test_select_a_group():
    assert select("db", NAMES, GROUPS) == ["db1.example.com", "db2.example.com"]


def test_select_a_range_by_short_name():
    assert select("web[003:005]", NAMES, GROUPS) == [
        "web003.example.com",
        "web004.example.com",
        "web005.example.com",
    ]


def test_select_a_glob():
    assert select("web01*", NAMES, GROUPS) == [f"web{i:03d}.example.com" for i in range(10, 13)]
    assert select("*.example.com", NAMES, GROUPS) == list(NAMES)


def test_select_short_and_full_names_mixed_keeps_inventory_order_without_repeats():
    assert select("db2,web002.example.com, web002 ,db", NAMES, GROUPS) == [
        "web002.example.com",
        "db1.example.com",
        "db2.example.com",
    ]


def test_select_nothing_matching_names_the_part_and_the_groups():
    with pytest.raises(ValueError) as e:
        select("web001,nope", NAMES, GROUPS)
    assert str(e.value) == "'nope' matches no host or group (groups: all, db, web)"


def test_select_a_backwards_range_says_so():
    with pytest.raises(ValueError) as e:
        select("web[005:001]", NAMES, GROUPS)
    assert "runs backwards" in str(e.value)


def test_a_typo_range_of_a_hundred_million_hosts_is_refused_before_it_eats_memory():
    with pytest.raises(PatternError, match="names 100000000 hosts; at most 100000 per pattern"):
        expand("web[1:100000000]")


def test_two_ranges_that_multiply_past_the_cap_are_refused_before_they_eat_memory():
    # each range is small; together they name 998,001 hosts
    with pytest.raises(PatternError, match=r"names 998001 hosts; at most 100000 per pattern"):
        expand("web[1:999]x[1:999]")


def test_an_inventory_of_many_patterns_past_the_cap_is_refused_with_the_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, '[inventory]\nhosts = ["a[1:60000]",\n  "b[1:60000]"]\n')
    assert str(e.value).startswith(f"{tmp_path / 'controlroom.toml'}:2: inventory.hosts: ")
    assert "more than 100000 hosts" in str(e.value)


@pytest.mark.parametrize("selector", ["", ",", " , ,"])
def test_select_nothing_at_all_is_an_error_not_every_host(selector):
    with pytest.raises(ValueError, match="names no host"):
        select(selector, NAMES, GROUPS)


def test_select_thousands_of_names_from_a_large_inventory_by_lookup():
    # a scan of the inventory per name would be 20,000 x 100,000 comparisons: this would not finish
    names = tuple(f"web{n:06d}.example.com" for n in range(1, 100_001))
    picked = select("web[000001:020000],web099999", names, {"all": names})
    assert len(picked) == 20_001
    assert picked[0] == "web000001.example.com" and picked[-1] == "web099999.example.com"


def test_check_summarises_a_fleet_of_100000_hosts_in_two_colos(tmp_path):
    # check reads each host's colo: a scan of the inventory per host would be 10^10 comparisons
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(
        '[inventory.groups.front]\nhosts = ["web[000001:050000]"]\ncolo = "mud"\n'
        '[inventory.groups.back]\nhosts = ["app[000001:050000]"]\ncolo = "sp1"\n'
        '[inventory.ssh]\nknown_hosts = "known_hosts"\n'
    )
    res = run_cli("check", "--config", str(path))
    assert res.returncode == 0, res.stderr
    assert "hosts: 100000" in res.stdout
    assert "  front            50000 hosts (colo mud)" in res.stdout
    assert "  back             50000 hosts (colo sp1)" in res.stdout

"""`controlroom check`: a bad config is one line on stderr naming file:line and the key, exit 2; a good one a summary."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core.errors import ConfigError, ConfigErrors
from tests.conftest import run_cli

INVENTORY = """\
[inventory]
hosts = ["web[01:10]"]

[inventory.ssh]
known_hosts = "known_hosts"
"""


def write(tmp_path: Path, body: str, name: str = "controlroom.toml") -> Path:
    """Write a config (and an empty known_hosts beside it, so only what the test breaks is broken)."""
    (tmp_path / "known_hosts").touch()
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def check_fails(
    path: Path, *, line: int | None, key: str | None, says: list[str], then_no_known_hosts: bool = False
) -> str:
    """Run `controlroom check --config PATH`; assert exit 2 and one stderr line naming file, line and key.

    then_no_known_hosts: the config names no known_hosts and ~/.ssh/known_hosts is missing, reported second.
    """
    res = run_cli("check", "--config", str(path))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    if then_no_known_hosts:
        assert len(lines) == 2, res.stderr
        assert ": inventory.ssh.known_hosts: file not found: " in lines[1], res.stderr
    else:
        assert len(lines) == 1, res.stderr
    msg = lines[0]
    assert msg.startswith("controlroom: "), msg
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert where in msg, msg
    if key is not None:
        assert f": {key}: " in msg, msg
    for fragment in says:
        assert fragment in msg, msg
    return msg


# ------------------------------------------------------------------------------------------- malformed configs


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, INVENTORY + "connect_timeout = = 5\n")
    check_fails(path, line=None, key=None, says=[f"{path}:6:19: invalid TOML"])


def test_string_for_max_parallel_says_a_whole_number_is_wanted(tmp_path):
    path = write(tmp_path, INVENTORY + 'max_parallel = "10"\n')
    check_fails(
        path, line=6, key="inventory.ssh.max_parallel", says=["must be a whole number", "got a string"]
    )


def test_list_for_user_says_a_string_is_wanted(tmp_path):
    path = write(tmp_path, INVENTORY + 'user = ["deploy"]\n')
    check_fails(path, line=6, key="inventory.ssh.user", says=["must be a string", "got a list"])


def test_number_in_host_list_names_the_offending_item(tmp_path):
    path = write(
        tmp_path, '[inventory]\nhosts = ["web01", 2]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
    )
    check_fails(path, line=2, key="inventory.hosts", says=["must be a list of strings", "a whole number (2)"])


def test_unknown_top_level_table_suggests_the_close_one(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[deploys]\nsteps = ["true"]\n')
    check_fails(
        path, line=7, key="deploys", says=["unknown key", "did you mean 'deploy'?", "allowed: inventory,"]
    )


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("usr", "user"), ("max_paralel", "max_parallel"), ("conect_timeout", "connect_timeout")],
)
def test_misspelt_ssh_key_suggests_the_real_one(tmp_path, typo, meant):
    path = write(tmp_path, INVENTORY + f"{typo} = 1\n")
    check_fails(
        path,
        line=6,
        key=f"inventory.ssh.{typo}",
        says=["unknown key", f"did you mean '{meant}'?", "allowed: user,"],
    )


def test_unknown_key_in_a_phase_names_that_phase(tmp_path):
    path = write(
        tmp_path,
        INVENTORY + '\n[[phase]]\nname = "canary"\nsize = 2\n\n[[phase]]\nname = "rest"\nbkae = "1m"\n',
    )
    check_fails(path, line=13, key="phase[1].bkae", says=["did you mean 'bake'?"])


def test_empty_file_asks_for_an_inventory(tmp_path):
    path = write(tmp_path, "")
    check_fails(
        path, line=None, key="inventory", says=["needs an [inventory] table"], then_no_known_hosts=True
    )


def test_inventory_without_hosts_says_how_to_give_them(tmp_path):
    path = write(tmp_path, "[inventory]\nhosts = []\n")
    check_fails(
        path,
        line=1,
        key="inventory",
        says=["no hosts", "inventory.hosts", "[inventory.groups.NAME]"],
        then_no_known_hosts=True,
    )


def test_group_without_hosts_is_refused(tmp_path):
    path = write(tmp_path, '[inventory.groups.web]\ncolo = "mud"\n')
    check_fails(
        path,
        line=1,
        key="inventory.groups.web.hosts",
        says=["at least one host pattern"],
        then_no_known_hosts=True,
    )


def test_backwards_range_says_how_to_write_it(tmp_path):
    path = write(tmp_path, '[inventory]\nhosts = ["web[010:001]"]\n')
    check_fails(
        path,
        line=2,
        key="inventory.hosts",
        says=["[010:001]", "runs backwards", "write [001:010]"],
        then_no_known_hosts=True,
    )


def test_unreadable_range_says_how_a_range_is_written(tmp_path):
    path = write(tmp_path, '[inventory]\nhosts = ["web[1-5]"]\n')
    check_fails(
        path, line=2, key="inventory.hosts", says=["a range is written [001:150]"], then_no_known_hosts=True
    )


def test_same_host_in_two_patterns_is_a_duplicate(tmp_path):
    path = write(tmp_path, '[inventory]\nhosts = ["web[01:10]", "web05"]\n')
    check_fails(
        path, line=2, key="inventory.hosts", says=["duplicate host 'web05'"], then_no_known_hosts=True
    )


def test_same_host_in_two_groups_names_both_groups(tmp_path):
    path = write(
        tmp_path,
        """\
        [inventory.groups.web]
        hosts = ["web[01:10]"]

        [inventory.groups.canary]
        hosts = ["web03"]
        """,
    )
    check_fails(
        path,
        line=5,
        key="inventory.groups.canary.hosts",
        says=["duplicate host 'web03'", "also in inventory.groups.web.hosts"],
        then_no_known_hosts=True,
    )


def test_group_named_all_is_reserved(tmp_path):
    path = write(tmp_path, '[inventory.groups.all]\nhosts = ["db1"]\n')
    check_fails(
        path, line=1, key="inventory.groups.all", says=["'all' is reserved"], then_no_known_hosts=True
    )


def test_canary_larger_than_the_fleet_says_how_many_hosts_there_are(tmp_path):
    path = write(
        tmp_path, INVENTORY + '\n[[phase]]\nname = "canary"\nsize = 20\n\n[[phase]]\nname = "rest"\n'
    )
    check_fails(path, line=9, key="phase[0].size", says=["'canary' needs 20 hosts", "the fleet has 10 hosts"])


def test_last_phase_that_leaves_hosts_out_says_how_many(tmp_path):
    path = write(
        tmp_path, INVENTORY + '\n[[phase]]\nname = "canary"\nsize = 2\n\n[[phase]]\nname = "rest"\nsize = 3\n'
    )
    check_fails(
        path,
        line=13,
        key="phase[1].size",
        says=["gets 3 of the 8 remaining hosts", "would leave 5 out", "100%"],
    )


def test_phase_without_size_before_the_last_asks_for_one(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[[phase]]\nname = "first"\n\n[[phase]]\nname = "rest"\n')
    check_fails(path, line=7, key="phase[0]", says=["'first' needs a size", "only the last phase"])


def test_percentage_over_100_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[[phase]]\nname = "canary"\nsize = "150%"\n')
    check_fails(path, line=9, key="phase[0].size", says=["at most 100%", "150%"])


def test_percentage_failure_budget_over_100_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[[phase]]\nname = "all"\nmax_failed = "101%"\n')
    check_fails(path, line=9, key="phase[0].max_failed", says=["at most 100%"])


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("connect_timeout = -1", "must be more than zero seconds, got -1"),
        ("command_timeout = 0", "must be more than zero seconds, got 0"),
        ('connect_timeout = "0s"', "must be more than zero seconds"),
        ("command_timeout = nan", "must be a finite number of seconds"),
    ],
)
def test_timeout_that_is_not_positive_is_refused(tmp_path, setting, says):
    path = write(tmp_path, INVENTORY + setting + "\n")
    check_fails(path, line=6, key=f"inventory.ssh.{setting.split()[0]}", says=[says])


def test_missing_known_hosts_file_says_keys_are_always_checked(tmp_path):
    path = write(
        tmp_path, '[inventory]\nhosts = ["web01"]\n[inventory.ssh]\nknown_hosts = "nowhere/known_hosts"\n'
    )
    check_fails(
        path,
        line=4,
        key="inventory.ssh.known_hosts",
        says=[f"file not found: {tmp_path / 'nowhere/known_hosts'}", "always checked", "ssh-keyscan"],
    )


def test_default_known_hosts_missing_from_home_is_reported(tmp_path):
    # the autouse fixture points HOME at an empty directory: no ~/.ssh/known_hosts there
    path = tmp_path / "controlroom.toml"
    path.write_text('[inventory]\nhosts = ["web01"]\n')
    check_fails(path, line=None, key="inventory.ssh.known_hosts", says=[".ssh/known_hosts", "file not found"])


def test_missing_identity_file_is_named(tmp_path):
    path = write(tmp_path, INVENTORY + 'identity_file = "keys/deploy_ed25519"\n')
    check_fails(
        path,
        line=6,
        key="inventory.ssh.identity_file",
        says=[f"file not found: {tmp_path / 'keys/deploy_ed25519'}"],
    )


def test_missing_ssh_config_file_is_named(tmp_path):
    path = write(tmp_path, INVENTORY + 'config = "ssh_config"\n')
    check_fails(
        path,
        line=6,
        key="inventory.ssh.config",
        says=[f"ssh config file not found: {tmp_path / 'ssh_config'}"],
    )


def test_bake_written_in_words_shows_durations_that_work(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[[phase]]\nname = "all"\nbake = "2 minutes"\n')
    check_fails(path, line=9, key="phase[0].bake", says=['"90s", "2m", "1h"', "'2 minutes'"])


SERIES = (
    '\n[metrics]\nurl = "http://prometheus:9090"\n[metrics.series.errors_5xx]\nquery = "sum(x)"\nmax = 5\n'
)


def test_gate_naming_an_unknown_series_suggests_the_defined_one(tmp_path):
    path = write(
        tmp_path,
        INVENTORY
        + '\n[[phase]]\nname = "canary"\nsize = 2\ngate = ["errors_5x < 5"]\n\n[[phase]]\nname = "rest"\n'
        + SERIES,
    )
    check_fails(
        path,
        line=10,
        key="phase[0].gate",
        says=["unknown series 'errors_5x'", "did you mean 'errors_5xx'?", "[metrics.series]"],
    )


def test_gate_that_cannot_be_read_shows_the_form(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[[phase]]\nname = "all"\ngate = ["errors_5xx is low"]\n' + SERIES)
    check_fails(
        path, line=9, key="phase[0].gate", says=["cannot read gate 'errors_5xx is low'", "SERIES < NUMBER"]
    )


def test_unknown_placeholder_in_a_deploy_step_lists_the_allowed_ones(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[deploy]\nsteps = ["fetch {revision}", "switch {rev}"]\n')
    check_fails(
        path, line=8, key="deploy.steps", says=["unknown placeholder {rev}", "{revision}, {previous}, {host}"]
    )


def test_unknown_placeholder_in_a_rollback_step_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[deploy]\nrollback = ["switch {prev}"]\n')
    check_fails(path, line=8, key="deploy.rollback", says=["unknown placeholder {prev}"])


def test_bad_flag_kind_lists_the_kinds(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[flags.beehive]\nkind = "killswitch"\n')
    check_fails(path, line=8, key="flags.beehive.kind", says=['"feature" or "kill_switch"', "'killswitch'"])


GUARDED = """
[metrics]
url = "http://prometheus:9090"
[metrics.series.errors_5xx]
query = "q"
max = 5

[flags.new_search]
kind = "kill_switch"
"""


def test_a_kill_switch_names_the_series_it_guards(tmp_path):
    path = write(tmp_path, INVENTORY + GUARDED + 'guards = ["errors_5xx"]\n')
    cfg = config.load(path)
    assert cfg.flags.flag("new_search").guards == ("errors_5xx",)
    assert [f.name for f in cfg.flags.guarding(["errors_5xx"])] == ["new_search"]
    assert cfg.flags.guarding(["p95_ms"]) == ()


def test_a_kill_switch_guarding_an_unknown_series_is_one_line_naming_file_line_and_key(tmp_path):
    path = write(tmp_path, INVENTORY + GUARDED + 'guards = ["errors_5x"]\n')
    check_fails(path, line=15, key="flags.new_search.guards",
                says=["unknown series 'errors_5x'", "did you mean 'errors_5xx'?", "[metrics.series]"])


def test_only_a_kill_switch_may_guard_a_series(tmp_path):
    body = GUARDED.replace('kind = "kill_switch"', 'description = "search"')
    path = write(tmp_path, INVENTORY + body + 'guards = ["errors_5xx"]\n')
    check_fails(path, line=15, key="flags.new_search.guards", says=['kind = "kill_switch"'])


def test_metrics_url_without_http_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[metrics]\nurl = "prometheus:9090"\n')
    check_fails(path, line=8, key="metrics.url", says=["must start with http:// or https://"])


def test_ssh_port_over_65535_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + "port = 65536\n")
    check_fails(path, line=6, key="inventory.ssh.port", says=["from 1 to 65535, got 65536"])


def test_host_override_port_over_65535_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + "\n[inventory.host]\nweb01 = { port = 70000 }\n")
    check_fails(path, line=8, key="inventory.host.web01.port", says=["from 1 to 65535, got 70000"])


def test_override_for_a_host_not_in_the_inventory_suggests_a_close_one(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[inventory.host]\nweb11 = { address = "10.0.0.11" }\n')
    check_fails(path, line=8, key="inventory.host.web11", says=["not a host in the inventory", "'web10'"])


def test_unknown_key_in_a_host_override_lists_the_allowed_ones(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[inventory.host.web01]\nadress = "10.0.0.1"\n')
    check_fails(path, line=8, key="inventory.host.web01.adress", says=["did you mean 'address'?"])


def test_duplicate_phase_names_are_refused(tmp_path):
    path = write(
        tmp_path, INVENTORY + '\n[[phase]]\nname = "canary"\nsize = 2\n\n[[phase]]\nname = "canary"\n'
    )
    check_fails(path, line=12, key="phase[1].name", says=["duplicate phase name 'canary'"])


def test_phase_written_as_a_table_says_to_use_double_brackets(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[phase]\nname = "canary"\n')
    check_fails(path, line=7, key="phase", says=["write each phase as [[phase]]"])


def test_bad_webhook_never_shows_the_secret(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[notify]\nwebhook = "chat.example.com/hooks/T0SECRET"\n')
    msg = check_fails(path, line=8, key="notify.webhook", says=["value not shown"])
    assert "T0SECRET" not in msg


def test_config_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "controlroom.toml"
    path.write_bytes(b'[inventory]\nhosts = ["web\xff"]\n')
    check_fails(path, line=None, key=None, says=["not UTF-8"])


# ------------------------------------------------------------------------------------------- finding the config


def test_config_named_by_flag_but_missing_says_so(tmp_path):
    res = run_cli("check", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"controlroom: {tmp_path / 'nope.toml'}: config file not found (from --config)"
    ]


def test_config_named_by_environment_but_missing_says_so(tmp_path):
    res = run_cli("check", cwd=tmp_path, env={"CONTROLROOM_CONFIG": str(tmp_path / "gone.toml")})
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"controlroom: {tmp_path / 'gone.toml'}: config file not found (from $CONTROLROOM_CONFIG)"
    ]


def test_no_config_anywhere_says_where_it_looked_and_offers_the_demo(tmp_path):
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 2
    [line] = res.stderr.splitlines()
    assert "no controlroom.toml in the current directory" in line
    assert "--config FILE" in line and "$CONTROLROOM_CONFIG" in line and "controlroom demo" in line


def test_config_path_that_is_a_directory_is_refused(tmp_path):
    res = run_cli("check", "--config", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"controlroom: {tmp_path}: not a file (from --config)"]


def _named_config(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write(
        directory, f'[inventory]\nhosts = ["{name}[1:3]"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
    )


def test_check_uses_flag_then_environment_then_current_directory(tmp_path):
    here = _named_config(tmp_path / "cwd", "cwd")
    from_env = _named_config(tmp_path / "env", "env")
    from_flag = _named_config(tmp_path / "flag", "flag")
    env = {"CONTROLROOM_CONFIG": str(from_env)}

    res = run_cli("check", "--config", str(from_flag), cwd=here.parent, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"{from_flag}: ok"

    res = run_cli("check", cwd=here.parent, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"{from_env}: ok"

    res = run_cli("check", cwd=here.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"{here}: ok"


def test_find_config_prefers_flag_then_environment_then_current_directory(tmp_path, monkeypatch):
    here = _named_config(tmp_path / "cwd", "cwd")
    from_env = _named_config(tmp_path / "env", "env")
    monkeypatch.chdir(here.parent)
    assert config.find_config() == here
    monkeypatch.setenv(config.ENV_VAR, str(from_env))
    assert config.find_config() == from_env
    assert config.find_config(str(here)) == here


# ------------------------------------------------------------------------------------------- good configs


PHASE_LINE = re.compile(r"^  (\S.*?)\s+(\d+) hosts  ")


def test_check_on_the_fleet_config_shows_three_phases_of_150_hosts(big_fleet):
    res = run_cli("check", "--config", str(big_fleet.config_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == f"{big_fleet.config_path}: ok"
    assert "hosts: 150" in out
    assert "phases: 3" in out
    phase_lines = out[out.index("phases: 3") + 1 :][:3]
    phases = {m.group(1): (int(m.group(2)), line) for line in phase_lines if (m := PHASE_LINE.match(line))}
    assert {name: count for name, (count, _) in phases.items()} == {
        "canary": 2,
        "stage 1": 15,
        "stage 2": 133,
    }
    assert "then waits for the operator" in phases["canary"][1]


FULL = """\
[inventory.groups.web]
hosts = ["web[001:040]"]
colo = "mud"

[inventory.groups.photos]
hosts = ["photos[01:08]"]
colo = "sp1"

[inventory.host]
photos01 = { colo = "ac4", port = 2222 }

[inventory.ssh]
known_hosts = "known_hosts"
connect_timeout = "3s"

[[phase]]
name = "canary"
hosts = ["web001", "photos01"]
bake = "2m"
gate = ["errors_5xx < 5", "p95_ms < 400"]

[[phase]]
name = "stage 1"
size = "10%"
max_failed = 1
parallel = 2

[[phase]]
name = "stage 2"
max_failed = "5%"

[flags]
file = "flags.toml"

[flags.enable_feature_video]
description = "video uploads"

[flags.beehive]
kind = "kill_switch"
description = "the whole site's write path"

[metrics]
source = "prometheus"
url = "http://prometheus:9090"

[metrics.series.errors_5xx]
query = 'sum(rate(http_requests_total{code=~"5.."}[1m]))'
max = 5

[metrics.series.p95_ms]
query = "histogram_quantile(0.95, x)"
max = 400

[notify]
webhook = "https://chat.example.com/hooks/T0SECRET/B0SECRET"
"""


def test_check_prints_groups_phases_flags_and_series_but_never_the_webhook(tmp_path):
    path = write(tmp_path, FULL)
    res = run_cli("check", "--config", str(path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    lines = [line.split() for line in out.splitlines()]
    assert ["hosts:", "48"] in lines
    assert ["web", "40", "hosts", "(colo", "mud)"] in lines
    assert ["photos", "8", "hosts", "(colo", "ac4,", "sp1)"] in lines
    assert ["phases:", "3"] in lines
    assert lines[lines.index(["phases:", "3"]) + 1][:3] == ["canary", "2", "hosts"]
    assert "bake 120 s" in out and "gate errors_5xx < 5 and p95_ms < 400" in out
    assert ["stage", "1", "5", "hosts", "2", "at", "a", "time,", "max_failed", "1"] in lines
    assert ["stage", "2", "41", "hosts", "max_failed", "2"] in lines
    assert ["flags:", "2"] in lines
    assert ["enable_feature_video", "feature", "video", "uploads"] in lines
    assert ["beehive", "kill", "switch", "the", "whole", "site's", "write", "path"] in lines
    assert ["metrics:", "2", "series", "from", "prometheus"] in lines
    assert ["errors_5xx", "max", "5"] in lines and ["p95_ms", "max", "400"] in lines
    assert "notify: webhook set" in out
    assert "SECRET" not in out and "SECRET" not in res.stderr


def test_loaded_config_is_what_the_file_says(tmp_path):
    cfg = config.load(write(tmp_path, FULL))
    assert cfg.ssh.connect_timeout == 3.0
    assert cfg.ssh.known_hosts == tmp_path / "known_hosts"
    assert cfg.phases[0].hosts == ("web001", "photos01")
    assert cfg.phase_specs[0].bake == 120.0
    assert cfg.host("photos01").port == 2222 and cfg.host("photos01").colo == "ac4"
    assert cfg.host("photos02").colo == "sp1" and cfg.host("photos02").port is None
    assert "SECRET" not in repr(cfg)


def test_config_error_is_a_one_line_controlroom_error(tmp_path):
    path = write(tmp_path, INVENTORY + "user = 7\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert e.value.exit_code == 2
    assert str(e.value) == f"{path}:6: inventory.ssh.user: must be a string, got a whole number"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5m", 90.0),
        ("2 minutes", None),
        ("", None),
    ],
)
def test_durations_read_as_an_operator_writes_them(text, seconds):
    assert config.parse_duration(text) == seconds


def test_relative_paths_are_relative_to_the_config_not_the_current_directory(tmp_path, monkeypatch):
    path = write(tmp_path, INVENTORY + '\n[state]\ndir = "state"\n')
    monkeypatch.chdir(os.path.dirname(tmp_path))
    cfg = config.load(path)
    assert cfg.state.dir == tmp_path / "state"
    assert cfg.ssh.known_hosts == tmp_path / "known_hosts"


# ------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("deploy", "steps", '["echo \\"{revision}\\" > REVISION"]'),
        ("deploy", "steps", "[\"ln -sfn '{revision}' current\"]"),
        ("deploy", "rollback", "[\"ln -sfn 'releases/{previous}' current\"]"),
        ("deploy", "health", '"curl -fsS \\"http://{host}/health\\""'),
        ("deploy", "steps", '["x=\\"$(echo \\"{revision}\\")\\""]'),
    ],
)
def test_a_placeholder_inside_quotes_is_refused_because_values_come_quoted(tmp_path, section, key, value):
    path = write(tmp_path, INVENTORY + f"\n[{section}]\n{key} = {value}\n")
    check_fails(
        path, line=8, key=f"{section}.{key}", says=["is inside quotes", "remove the quotes around it"]
    )


@pytest.mark.parametrize(
    "step",
    [
        'echo $HOME ${HOME} "${HOME}" > where',
        "awk '{print $1}' REVISION",
        'echo "$(cat releases/{revision}/REVISION)"',
        "test -d releases/{revision} && echo {host}: {previous}",
        "{ echo a; echo b; } > both; echo {a,b}",
    ],
)
def test_shell_variables_and_literal_braces_in_a_step_are_the_shells(tmp_path, step):
    path = write(tmp_path, INVENTORY + "\n[deploy]\nsteps = [" + _toml_string(step) + "]\n")
    assert config.load(path).deploy.steps == (step,)


def _toml_string(s: str) -> str:
    return "'" + s + "'" if "'" not in s else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_a_shell_variable_named_like_a_placeholder_is_refused_as_ambiguous(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[deploy]\nsteps = ["echo ${revision}"]\n')
    check_fails(
        path, line=8, key="deploy.steps", says=["${revision}", "is a shell variable", "write {revision}"]
    )


def test_unknown_placeholder_in_the_health_check_is_refused(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[deploy]\nhealth = "curl -fsS {hostname}/health"\n')
    check_fails(path, line=8, key="deploy.health", says=["unknown placeholder {hostname}", "{revision}"])


def test_a_placeholder_in_live_command_is_refused_because_it_is_never_filled_in(tmp_path):
    path = write(tmp_path, INVENTORY + '\n[release]\nlive_command = "cat releases/{host}/REVISION"\n')
    check_fails(path, line=8, key="release.live_command", says=["{host}", "not filled in here", "none here"])


@pytest.mark.parametrize(
    ("body", "line", "key", "says"),
    [
        ("[deploy]\nsteps = []\n", 8, "deploy.steps", "is empty: list the commands"),
        ('[deploy]\nsteps = ["true", " "]\n', 8, "deploy.steps", "command 2 of 2 is empty"),
        ('[deploy]\nhealth = ""\n', 8, "deploy.health", "leave health out for no health check"),
        ('[[phase]]\nname = ""\n', 8, "phase[0].name", "must not be empty"),
        ('[[phase]]\nname = "can\\u001b[2Jary"\n', 8, "phase[0].name", "one line of printable text"),
    ],
)
def test_empty_steps_and_phase_names_are_clear_errors(tmp_path, body, line, key, says):
    path = write(tmp_path, INVENTORY + "\n" + body)
    msg = check_fails(path, line=line, key=key, says=[says])
    assert "\x1b" not in msg


# ------------------------------------------------------------------------------------------- every error at once


MANY_ERRORS = """\
[inventory]
hosts = ["web[01:10]"]

[inventory.ssh]
known_hosts = "nowhere/known_hosts"
max_parallel = "lots"
user = 7
conect_timeout = 5

[deploy]
steps = []
health = "curl '{host}'"

[[phase]]
name = ""
size = "200%"
"""


def test_check_reports_every_error_in_one_run_bad_values_before_missing_files(tmp_path):
    path = write(tmp_path, MANY_ERRORS)
    res = run_cli("check", "--config", str(path))
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    where_and_key = [line.split(": ")[1:3] for line in lines]
    assert where_and_key == [
        [f"{path}:6", "inventory.ssh.max_parallel"],
        [f"{path}:7", "inventory.ssh.user"],
        [f"{path}:8", "inventory.ssh.conect_timeout"],
        [f"{path}:11", "deploy.steps"],
        [f"{path}:12", "deploy.health"],
        [f"{path}:15", "phase[0].name"],
        [f"{path}:16", "phase[0].size"],
        [f"{path}:5", "inventory.ssh.known_hosts"],  # a missing file comes after every bad value
    ], res.stderr
    assert "did you mean 'connect_timeout'?" in lines[2]
    assert all(line.startswith("controlroom: ") for line in lines)


def test_other_commands_stop_at_the_first_error_check_shows(tmp_path):
    path = write(tmp_path, MANY_ERRORS)
    first = run_cli("check", "--config", str(path)).stderr.splitlines()[0]
    for args in (["run", "true"], ["log"], ["deploy", "--yes"]):
        res = run_cli(*args, "--config", str(path))
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.splitlines() == [first], (args, res.stderr)


def test_load_raises_one_error_holding_them_all(tmp_path):
    path = write(tmp_path, MANY_ERRORS)
    with pytest.raises(ConfigErrors) as e:
        config.load(path)
    assert len(e.value.errors) == 8
    assert str(e.value) == str(e.value.errors[0])
    assert isinstance(e.value, ConfigError) and e.value.exit_code == 2


def test_check_shows_twenty_errors_and_counts_the_rest(tmp_path):
    body = INVENTORY + "".join(f"typo_{i} = 1\n" for i in range(25))
    res = run_cli("check", "--config", str(write(tmp_path, body)))
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 21
    assert all(": inventory.ssh.typo_" in line and "unknown key" in line for line in lines[:20])
    assert lines[20] == "controlroom: ... and 5 more errors"


# ------------------------------------------------------------------------------------------- agent forwarding


def test_agent_forwarding_is_off_unless_the_config_turns_it_on(tmp_path):
    assert config.load(write(tmp_path, INVENTORY)).ssh.agent_forwarding is False
    assert config.load(write(tmp_path, INVENTORY + "agent_forwarding = true\n")).ssh.agent_forwarding is True
    check_fails(
        write(tmp_path, INVENTORY + 'agent_forwarding = "yes"\n'),
        line=6,
        key="inventory.ssh.agent_forwarding",
        says=["must be true or false"],
    )

from tests.conftest import run_cli


def test_run_true_on_healthy_fleet_reports_every_host_ok(any_make_fleet):
    fleet = any_make_fleet(hosts=4)
    res = run_cli("run", "true", cwd=fleet.dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("4 hosts: 4 ok")

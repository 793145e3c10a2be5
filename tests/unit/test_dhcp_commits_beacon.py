"""The dhcp_commits beacon: each record of salt/dhcpd's commit hook becomes one event, once."""

import subprocess

import jinja2

from tests.conftest import REPO, load_by_path

beacon = load_by_path("dhcp_commits_beacon", REPO / "_beacons" / "dhcp_commits.py")


def _hook(tmp_path):
    """The commit hook as salt/dhcpd renders it, writing into tmp_path/spool."""
    text = jinja2.Template((REPO / "salt/dhcpd/files/cluster-dhcp-commit.jinja").read_text()).render(
        dhcpd={"commit_spool": str(tmp_path / "spool")})
    path = tmp_path / "cluster-dhcp-commit"
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_each_record_of_the_hook_is_one_event_once(tmp_path):
    hook = _hook(tmp_path)
    subprocess.run([hook, "gamma", "10.77.0.23"], check=True)
    subprocess.run([hook, "delta", "10.77.0.21"], check=True)
    subprocess.run([hook, "gamma", "10.77.0.23"], check=True)  # a second lease: one record per node
    config = [{"spool": str(tmp_path / "spool")}, {"interval": 2}]
    assert beacon.validate(config) == (True, "valid")
    events = beacon.beacon(config)
    assert [(e["tag"], e["node"], e["address"]) for e in events] == [("delta", "delta", "10.77.0.21"),
                                                                      ("gamma", "gamma", "10.77.0.23")]
    assert all(isinstance(e["committed"], int) for e in events)
    assert beacon.beacon(config) == []  # read once
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_record_in_the_making_and_a_missing_spool_give_nothing(tmp_path):
    spool = tmp_path / "spool"
    assert beacon.beacon([{"spool": str(spool)}]) == []
    spool.mkdir()
    (spool / ".gamma.new").write_text("10.77.0.23 1\n")
    assert beacon.beacon([{"spool": str(spool)}]) == []
    assert (spool / ".gamma.new").exists()


def test_validate_refuses_a_relative_spool():
    ok, why = beacon.validate([{"spool": "run/x"}])
    assert not ok and "absolute path" in why
    assert beacon.validate({"spool": "/run/x"})[0] is False  # not a list

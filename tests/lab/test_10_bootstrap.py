"""End to end: from vanilla nodes to trusted, connected minions (issue: bootstrap).

`python3 -m lab bootstrap` runs bootstrap/deployer on psi, then salt-ssh bootstrap.minion from
psi to every node. These tests then check what a user relies on.
"""

import json
import re
import subprocess
import time

from lab import access
from tests.lab.conftest import INVENTORY_ON_DEPLOYER, salt

REPO_ON_DEPLOYER = "/srv/cluster"




def test_every_minion_answers(cluster):
    assert salt(cluster, "'*' test.ping") == {n: True for n in cluster.nodes}


def test_minions_carry_their_inventory_roles(cluster):
    roles = salt(cluster, "'*' grains.get roles")
    assert roles["psi"] == ["deployer"]
    assert roles["alpha"] == roles["beta"] == ["lanservices"]
    assert roles["zeta"] == ["compute"]


def test_master_security_settings(cluster):
    for opt in ("auto_accept", "open_mode"):
        out = cluster.run("psi", f"sudo salt-run --out json config.get {opt}", check=True).stdout
        assert json.loads(out) is False, opt


def test_minion_key_and_config_modes(cluster):
    out = cluster.run(
        "delta", "sudo stat -c '%a %U %n' /etc/salt/pki/minion/minion.pem /etc/salt/pki/minion /etc/salt/minion.d/cluster.conf",
        check=True,
    ).stdout.split("\n")
    assert out[0] == "400 root /etc/salt/pki/minion/minion.pem"
    assert out[1] == "700 root /etc/salt/pki/minion"
    assert out[2] == "644 root /etc/salt/minion.d/cluster.conf"
    conf = cluster.run("delta", "sudo cat /etc/salt/minion.d/cluster.conf", check=True).stdout
    assert re.search(r"master_finger: '([0-9a-f]{2}:){31}[0-9a-f]{2}'", conf), conf


def test_default_password_no_longer_opens_any_node(cluster):
    st = cluster.status()
    for name, node in st["nodes"].items():
        proc = subprocess.run(
            access.as_pi(node["ip"], ["true"], via_deployer=True), capture_output=True, text=True, timeout=60, check=False,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode != 0 and access.auth_failed(proc), f"{name}: pi/raspberry still logs in"
        # locked and out of sudo by the bootstrap; gone once a highstate ran (test_45)
        locked = cluster.run(name, "if id pi >/dev/null 2>&1; then sudo passwd -S pi | cut -d' ' -f2; id -nG pi; "
                                   "else echo L; echo gone; fi; ls /etc/sudoers.d", check=True)
        status, groups, sudoers = locked.stdout.split("\n", 2)
        assert status == "L", name
        assert "sudo" not in groups.split(), name
        assert "010_pi-nopasswd" not in sudoers, name
        sshd = cluster.run(name, "sudo sshd -T | grep -E '^(passwordauthentication|permitrootlogin) '", check=True)
        assert sorted(sshd.stdout.split("\n")[:2]) == ["passwordauthentication no", "permitrootlogin no"], name


def test_running_the_bootstrap_again_changes_nothing(cluster):
    deployer = cluster.run(
        "psi",
        f"sudo {REPO_ON_DEPLOYER}/bootstrap/deployer --package-cache http://{cluster.status()['host']}:8080 "
        f"--inventory {INVENTORY_ON_DEPLOYER} --admin-key {REPO_ON_DEPLOYER}/lab-admin.pub",
        # the same arguments as python3 -m lab bootstrap
        timeout=600,
    )
    assert deployer.returncode == 0, deployer.stdout + deployer.stderr
    assert "(changed=" not in deployer.stdout, deployer.stdout
    assert "created nothing" in deployer.stdout
    started = time.monotonic()
    proc = cluster.run(
        "psi", f"cd {REPO_ON_DEPLOYER} && sudo salt-ssh --out json --static '*' state.apply bootstrap.minion", timeout=900
    )
    print(f"\nsalt-ssh bootstrap.minion rerun on {len(cluster.nodes)} nodes: {time.monotonic() - started:.1f} s")
    rets = json.loads(proc.stdout)
    assert sorted(rets) == sorted(cluster.nodes)
    changed = {
        node: [sid for sid, s in ret.items() if s.get("changes")] for node, ret in rets.items()
    }
    assert changed == {n: [] for n in cluster.nodes}
    failed = {node: [sid for sid, s in ret.items() if s.get("result") is not True] for node, ret in rets.items()}
    assert failed == {n: [] for n in cluster.nodes}


def test_an_uninvited_minion_stays_pending_and_gets_nothing(cluster):
    """A minion the inventory does not know, with its own key, started on a cluster address (a
    second salt-minion on gamma: from anywhere else the deployer's firewall drops 4505/4506
    before Salt sees it, test_65_firewall.py)."""
    conf = "/tmp/intruder"
    cluster.run("gamma", f"sudo rm -rf {conf}; sudo mkdir -p {conf} && printf '%s\\n' 'id: intruder' "
                         f"'master: {cluster.ip('psi')}' 'root_dir: {conf}/root' 'grains: {{roles: [lanservices]}}' "
                         f"'acceptance_wait_time: 1' | sudo tee {conf}/minion >/dev/null", check=True)
    started = cluster.run("gamma", f"sudo sh -c '/opt/salt/bin/salt-minion -c {conf} -l quiet >/dev/null 2>&1 & echo $!'",
                          check=True)
    pid = started.stdout.strip()
    try:
        keys = {}
        for _ in range(30):
            keys = json.loads(cluster.run("psi", "sudo salt-key -L --out json").stdout or "{}")
            if "intruder" in keys.get("minions_pre", []):
                break
            time.sleep(1)
        assert "intruder" in keys.get("minions_pre", []), keys
        assert "intruder" not in keys.get("minions", [])
        ping = cluster.run("psi", "sudo salt --out json --static intruder test.ping")
        assert "intruder" not in (ping.stdout or "")
        pillar = cluster.run("gamma", f"sudo timeout 120 /opt/salt/bin/salt-call -c {conf} --out json pillar.items",
                             timeout=150)
        assert pillar.returncode != 0
        assert "cluster" not in pillar.stdout
    finally:
        cluster.run("gamma", f"sudo kill {pid}; sleep 2; sudo kill -9 {pid} 2>/dev/null; sudo rm -rf {conf}")
        cluster.run("psi", "sudo salt-key -y -d intruder")


REDIS_PASSWORD = "/etc/salt/cluster-secrets/redis.password"


def redis_cli(cluster, args, password=True):
    """redis-cli on the deployer, with the cluster's Redis password (root-only) or without."""
    auth = f"REDISCLI_AUTH=$(cat {REDIS_PASSWORD}) " if password else ""
    return cluster.run("psi", f"sudo sh -c '{auth}redis-cli {args}'", timeout=30)


def test_redis_wants_the_password_and_listens_on_the_loopback_only(cluster):
    refused = redis_cli(cluster, "-n 0 dbsize", password=False)
    assert "NOAUTH" in refused.stdout + refused.stderr, refused
    assert redis_cli(cluster, "-n 0 dbsize").stdout.strip().isdigit()
    listening = cluster.run("psi", "ss -Hltn 'sport = :6379'", check=True).stdout.split()
    local = [word for word in listening if word.endswith(":6379")]
    assert local and all(w.startswith(("127.0.0.1:", "[::1]:")) for w in local), listening


def test_job_results_live_in_redis_and_survive_a_master_restart(cluster):
    out = cluster.run("psi", "sudo salt --async psi test.echo redis-proof", check=True).stdout
    jid = re.search(r"(\d{20})", out).group(1)
    for _ in range(30):
        if redis_cli(cluster, f"-n 0 --scan --pattern ret:{jid}*").stdout.strip():
            break
        time.sleep(1)
    assert redis_cli(cluster, f"-n 0 --scan --pattern ret:{jid}*").stdout.strip(), "no result in Redis"
    cluster.run("psi", "sudo systemctl restart salt-master", check=True, timeout=120)
    for _ in range(60):
        jobs = cluster.run("psi", "sudo salt-run --out json jobs.list_jobs", timeout=60)
        if jobs.returncode == 0 and jid in jobs.stdout:
            break
        time.sleep(2)
    assert jid in jobs.stdout
    looked_up = json.loads(cluster.run("psi", f"sudo salt-run --out json jobs.lookup_jid {jid}", check=True).stdout)
    assert looked_up == {"psi": "redis-proof"}
    # the minions come back to the restarted master
    for _ in range(30):
        if salt(cluster, "'*' test.ping") == {n: True for n in cluster.nodes}:
            break
        time.sleep(2)
    assert salt(cluster, "'*' test.ping") == {n: True for n in cluster.nodes}

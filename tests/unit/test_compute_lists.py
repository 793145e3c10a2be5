"""The compute host lists derived from the inventory: distcc hosts and the MPI host file, as
salt/distcc/map.jinja and salt/mpich/map.jinja build them from the node pillar (rendered by
Salt's own Jinja renderer and loaders, the pillar from the real ext_pillar)."""

import contextlib
import json
import subprocess

import jinja2
import pytest
import yaml

from salt.exceptions import SaltRenderError
from tests.conftest import INVENTORY, STATE_TREE
from tests.firewall import loaders

COMPUTE_IPS = ["192.168.10.21", "192.168.10.22", "192.168.10.23", "192.168.10.24"]


@pytest.fixture(scope="module")
def minion(salt_factories):
    """Loaders of an inventory node by name, made once per node."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = loaders(salt_factories, name)
        return made[name]

    return get


def _map(node, service, **lookup):
    """The dict salt/<service>/map.jinja gives the SLS of minion ``node`` (``lookup``: the
    service's <service>:lookup overrides, here from the minion config)."""
    template = f"{{%- from '{service}/map.jinja' import {service} with context %}}{{{{ {service} | json }}}}"
    node.opts[service] = {"lookup": lookup}
    try:
        return json.loads(node.modules.slsutil.renderer(string=template, default_renderer="jinja"))
    finally:
        del node.opts[service]


@contextlib.contextmanager
def _with_node(node, tmp_path, name, ip, roles=("compute",)):
    """The inventory plus node ``name``, for minion ``node`` (its pillar rendered from it)."""
    inv = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    inv["cluster"]["nodes"][name] = {"roles": list(roles), "ip": ip, "mac": "b8:27:eb:00:00:99", "model": ""}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    saved = node.opts["cluster_inventory"]
    node.opts["cluster_inventory"] = str(path)
    node.refresh_pillar()
    try:
        yield
    finally:
        node.opts["cluster_inventory"] = saved
        node.refresh_pillar()


def _render(template, **context):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(STATE_TREE)), keep_trailing_newline=True)
    return env.get_template(template).render(**context)


def test_distcc_hosts_are_the_compute_ips_by_ip_with_job_cap_and_compression(minion):
    delta = minion("delta")
    assert _map(delta, "distcc", jobs=4)["hosts"] == [f"{ip}/4,lzo" for ip in COMPUTE_IPS]
    assert _map(delta, "distcc", jobs=2, compression="")["hosts"] == [f"{ip}/2" for ip in COMPUTE_IPS]
    assert _map(delta, "distcc", jobs="", compression="")["hosts"] == COMPUTE_IPS
    assert _map(delta, "distcc", jobs="", compression="cpp,lzo")["hosts"] == [f"{ip},cpp,lzo" for ip in COMPUTE_IPS]


def test_distcc_hosts_follow_the_inventory_a_new_compute_node_appears_in_ip_order(minion, tmp_path):
    psi = minion("psi")  # the deployer's client list too (distcc.client is part of the deployer role)
    with _with_node(psi, tmp_path, "omega", "192.168.10.12"):
        hosts = _map(psi, "distcc", jobs=4)["hosts"]
    assert hosts == [f"{ip}/4,lzo" for ip in ["192.168.10.12", *COMPUTE_IPS]]
    # the deployer and the lanservices nodes are never distcc servers
    assert not {"192.168.10.10", "192.168.10.6", "192.168.10.8"} & {h.split("/")[0] for h in hosts}


def test_distcc_server_listens_on_the_node_and_takes_jobs_from_every_node(minion):
    distcc = _map(minion("epsilon"), "distcc")
    assert distcc["node"] == {"name": "epsilon", "ip": "192.168.10.22"}
    assert distcc["allowed"] == [f"{ip}/32" for ip in ["192.168.10.6", "192.168.10.8", "192.168.10.10", *COMPUTE_IPS]]


@pytest.mark.parametrize("jobs", [0, -1, "four", True, 2.5])
def test_distcc_hosts_refuse_a_bad_job_cap(minion, jobs):
    with pytest.raises(SaltRenderError, match="positive integer"):
        _map(minion("delta"), "distcc", jobs=jobs)


@pytest.mark.parametrize("options", ["lzo;rm -rf /", "LZO", "lzo,", "lzo\n"])
def test_distcc_hosts_refuse_bad_options(minion, options):
    with pytest.raises(SaltRenderError, match="'lzo' or 'cpp,lzo'"):
        _map(minion("delta"), "distcc", compression=options)


def test_mpi_hostfile_lists_compute_names_by_ip(minion, tmp_path):
    gamma = minion("gamma")
    assert _map(gamma, "mpich")["hosts"] == ["delta", "epsilon", "gamma", "zeta"]
    assert _map(gamma, "mpich", slots=4)["hosts"] == ["delta:4", "epsilon:4", "gamma:4", "zeta:4"]
    with _with_node(gamma, tmp_path, "eta", "192.168.10.25"):
        mpich = _map(gamma, "mpich")
    assert mpich["hosts"] == ["delta", "epsilon", "gamma", "zeta", "eta"]
    assert mpich["peers"][-3:] == ["eta", "eta.dc1.b3rry.clust0r", "192.168.10.25"]
    with pytest.raises(SaltRenderError, match="positive integer"):
        _map(gamma, "mpich", slots=0)


def test_distcc_hosts_template_writes_one_host_per_line():
    text = _render("distcc/files/hosts.jinja", hosts=[f"{ip}/4,lzo" for ip in COMPUTE_IPS])
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == [f"{ip}/4,lzo" for ip in COMPUTE_IPS]
    assert text.endswith("/4,lzo\n")


def test_distcc_defaults_file_is_valid_shell_with_the_node_ip_and_subnet():
    defaults = yaml.safe_load((STATE_TREE / "distcc" / "defaults.yaml").read_text())["distcc"]
    text = _render("distcc/files/default-distcc.jinja", distcc=defaults, listener="192.168.10.21",
                   allowed=["192.168.10.0/24"])
    out = subprocess.run(
        ["sh", "-c", f'{text}\necho "$STARTDISTCC|$ALLOWEDNETS|$LISTENER|$JOBS|$NICE|$ZEROCONF"'],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out == f"true|192.168.10.0/24|192.168.10.21|{defaults['jobs']}|{defaults['nice']}|false"

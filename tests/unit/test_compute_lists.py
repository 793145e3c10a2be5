"""The compute host lists derived from the inventory: distcc hosts and the MPI host file."""

import copy
import subprocess

import jinja2
import pytest
import yaml

from tests.conftest import INVENTORY, REPO, STATE_TREE, load_by_path

model = load_by_path("cluster_model_compute_lists", REPO / "_modules" / "cluster.py")
INV = model.load_inventory(INVENTORY)
COMPUTE_IPS = ["192.168.10.21", "192.168.10.22", "192.168.10.23", "192.168.10.24"]


@pytest.fixture
def configure_loader_modules():
    return {model: {"__pillar__": dict(INV)}}


def _with_node(name, ip, roles=("compute",)):
    inv = copy.deepcopy(INV)
    inv["cluster"]["nodes"][name] = {"roles": list(roles), "ip": ip, "mac": "b8:27:eb:00:00:99", "model": ""}
    return model.check(inv)


def _render(template, **context):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(STATE_TREE)), keep_trailing_newline=True)
    return env.get_template(template).render(**context)


def test_distcc_hosts_are_the_compute_ips_by_ip_with_job_cap_and_compression():
    assert model.distcc_hosts(jobs=4) == [f"{ip}/4,lzo" for ip in COMPUTE_IPS]
    assert model.distcc_hosts(jobs=2, options="") == [f"{ip}/2" for ip in COMPUTE_IPS]
    assert model.distcc_hosts(options="") == COMPUTE_IPS


def test_distcc_hosts_follow_the_inventory_a_new_compute_node_appears_in_ip_order():
    inv = _with_node("omega", "192.168.10.12")
    assert model.distcc_hosts(jobs=4, inventory=inv) == [f"{ip}/4,lzo" for ip in ["192.168.10.12", *COMPUTE_IPS]]
    # the deployer and the lanservices nodes are never distcc servers
    assert not {"192.168.10.10", "192.168.10.6", "192.168.10.8"} & {h.split("/")[0] for h in model.distcc_hosts()}


@pytest.mark.parametrize("jobs", [0, -1, "four", True, 2.5])
def test_distcc_hosts_refuse_a_bad_job_cap(jobs):
    with pytest.raises(model.CommandExecutionError, match="positive integer"):
        model.distcc_hosts(jobs=jobs)


def test_distcc_hosts_refuse_bad_options():
    with pytest.raises(model.CommandExecutionError, match="'lzo' or 'cpp,lzo'"):
        model.distcc_hosts(options="lzo;rm -rf /")


def test_mpi_hostfile_lists_compute_names_by_ip():
    assert model.mpi_hostfile() == ["delta", "epsilon", "gamma", "zeta"]
    assert model.mpi_hostfile(slots=4) == ["delta:4", "epsilon:4", "gamma:4", "zeta:4"]
    assert model.mpi_hostfile(slots="") == ["delta", "epsilon", "gamma", "zeta"]
    inv = _with_node("eta", "192.168.10.25")
    assert model.mpi_hostfile(inventory=inv) == ["delta", "epsilon", "gamma", "zeta", "eta"]
    with pytest.raises(model.CommandExecutionError, match="positive integer"):
        model.mpi_hostfile(slots=0)


def test_distcc_hosts_template_writes_one_host_per_line():
    text = _render("distcc/files/hosts.jinja", hosts=model.distcc_hosts(jobs=4))
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

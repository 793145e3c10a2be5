"""The bench's scale part (bench/scale.py): the generated inventory is valid and has its 250 nodes,
and the checks of its outputs catch an empty or partial render. Nothing here is timed."""

import jinja2
import pytest
import yaml

from bench import scale
from rpicluster import model, views
from tests.conftest import REPO, load_by_path

dnszone = load_by_path("dnszone_bench_scale", REPO / "_modules" / "dnszone.py")
dhcpd = load_by_path("dhcpd_failover_bench_scale", REPO / "_modules" / "dhcpd_failover.py")
PARAMS = yaml.safe_load((REPO / "salt" / "dhcpd" / "defaults.yaml").read_text())["dhcpd"]
TEMPLATE = (REPO / "salt" / "dhcpd" / "files" / "dhcpd.conf.jinja").read_text()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The generated inventory, written as the bench writes it and loaded by the model."""
    path = tmp_path_factory.mktemp("scale") / "inventory.yaml"
    path.write_text(scale.inventory_text(scale.inventory(), "a comment"), encoding="utf-8")
    return model.load_inventory(path)["cluster"]


def texts(cluster, records=True):
    """The forward and reverse zones and the primary's dhcpd.conf of ``cluster``, rendered by the
    modules and the template the bench's path ends in (``records=False``: zones with no records,
    no reservations)."""
    view = views.node_view(cluster, views.lanservices(cluster)["primary"])
    zones = [dnszone.render(zone["name"], zone["records"] if records else [], scale.SERIAL,
                            [f"alpha.{cluster['domain']}."]) for zone in view["dns"]["zones"]]
    if not records:
        view["dhcp"]["reservations"] = []
    conf = dhcpd.peer_config(PARAMS, "pxelinux.0", node=view, inventory=cluster)
    return (*zones, jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(TEMPLATE).render(
        dhcpd=PARAMS, conf=conf))


def test_the_generated_inventory_is_valid_with_250_nodes(generated):
    assert len(generated["nodes"]) == scale.NODES == 250
    roles = [views.nodes(generated, role) for role in ("deployer", "lanservices", "compute")]
    assert [len(r) for r in roles] == [1, 2, 247]
    lab = model.load_inventory(REPO / "lab" / "inventory.yaml")["cluster"]
    assert all(generated["nodes"][name] == spec for name, spec in lab["nodes"].items())  # the lab's, as they are
    assert generated["network"]["subnet"] == scale.SUBNET
    assert generated["network"]["dhcp_pool"] == {"start": scale.POOL[0], "end": scale.POOL[1]}


def test_the_file_has_one_line_a_node(generated):
    text = scale.inventory_text({"cluster": generated})
    assert sum(line.startswith("    c") for line in text.splitlines()) == 243
    assert model.check(yaml.safe_load(text)) == generated


def test_the_checks_pass_a_right_render(generated):
    assert scale.check_outputs(generated, *texts(generated)) == []


def test_the_checks_catch_an_empty_render(generated):
    assert len(scale.check_outputs(generated, "", "", "")) == 3
    problems = scale.check_outputs(generated, *texts(generated, records=False))
    assert [p.split(":")[0] for p in problems] == ["forward zone", "reverse zone", "dhcpd.conf"]


def test_the_checks_catch_a_missing_or_wrong_node(generated):
    forward, reverse, conf = texts(generated)
    short = conf.replace("host c100 {", "host c100x {")
    assert [p.split(":")[0] for p in scale.check_outputs(generated, forward, reverse, short)] == ["dhcpd.conf"]
    wrong_ip = forward.replace(generated["nodes"]["c007"]["ip"] + "\n", "10.77.2.254\n")
    assert [p.split(":")[0] for p in scale.check_outputs(generated, wrong_ip, reverse, conf)] == ["forward zone"]
    no_ptr = "\n".join(line for line in reverse.splitlines() if "c042." not in line)
    assert [p.split(":")[0] for p in scale.check_outputs(generated, forward, no_ptr, conf)] == ["reverse zone"]


def test_the_bench_path_renders_every_node_once(tmp_path):
    """One pass of the part's own path through Salt (untimed): the SLS ids and arguments it reads
    are still there, and its outputs pass the checks."""
    data = scale.inventory()
    inventory_file = tmp_path / "inventory.yaml"
    inventory_file.write_text(scale.inventory_text(data), encoding="utf-8")
    path = scale.Path(tmp_path, inventory_file, "alpha")
    stages, out = scale.run_once(path, data, 1)
    assert sorted(stages) == sorted(scale.STAGES)
    assert out["dhcpd.conf"].count("\nhost ") == 250

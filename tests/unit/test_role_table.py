"""The role table (salt/roles/defaults.yaml) is the only list of a role's services; the roles
themselves must be the ones the model validates inventories against, each with its SLS."""

import yaml

from rpicluster import model
from tests.conftest import STATE_TREE


def test_the_table_has_exactly_the_roles_the_inventory_may_name_each_with_its_sls():
    table = yaml.safe_load((STATE_TREE / "roles" / "defaults.yaml").read_text())["roles"]["services"]
    assert sorted(table) == sorted(model.ROLES)
    # one SLS per role, and roles.clean (the markers of the roles a node lacks)
    assert sorted(p.stem for p in (STATE_TREE / "roles").glob("*.sls")) == sorted([*model.ROLES, "clean"])


def test_every_service_of_the_table_is_a_folder_of_the_state_tree():
    table = yaml.safe_load((STATE_TREE / "roles" / "defaults.yaml").read_text())["roles"]["services"]
    def sls_file(svc):  # distcc.client is distcc/client.sls, bind is bind/init.sls
        return STATE_TREE / (svc.replace(".", "/") + ".sls" if "." in svc else f"{svc}/init.sls")
    missing = [svc for services in table.values() for svc in services if not sls_file(svc).exists()]
    assert missing == []

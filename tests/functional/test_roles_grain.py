"""The top file matches the roles grain, and the grain follows the inventory before the top is
matched: one highstate applies a role change (salt/top.sls, salt/roles/map.jinja), through
Salt's own top matching (state.show_top) for minions of the project inventory."""

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts

ROLE_SLS = {"roles.deployer", "roles.lanservices", "roles.compute"}


@pytest.fixture
def top_of(salt_factories, secrets_dir):
    made = []

    def top_of(minion_id, grain_roles):
        factory = salt_factories.salt_minion_daemon(minion_id, overrides={
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            "grains": {"roles": grain_roles},
        })
        loaders = Loaders(factory.config.copy(), loaded_base_name=f"{__name__}.{minion_id}{len(made)}.loaded")
        made.append(loaders)
        top = loaders.modules.state.show_top()
        assert isinstance(top, dict), top  # a list would be render errors
        return set(top["base"]) & ROLE_SLS, loaders

    yield top_of
    for loaders in made:
        loaders.reset_state()


def test_a_stale_roles_grain_is_replaced_by_the_inventory_before_the_top_matches(top_of):
    # alpha is lanservices in the inventory; its grain still says compute (a role change)
    matched, _ = top_of("alpha", ["compute"])
    assert matched == {"roles.lanservices"}


def test_a_grain_that_agrees_with_the_inventory_is_matched_as_it_is(top_of):
    assert top_of("delta", ["compute"])[0] == {"roles.compute"}
    assert top_of("psi", ["deployer"])[0] == {"roles.deployer"}


def test_a_minion_outside_the_inventory_keeps_its_grain_and_its_role_does_not_render(top_of):
    # no node pillar: nothing to follow; the role's SLS refuses to render, saying why
    matched, loaders = top_of("stranger", ["deployer"])
    assert matched == {"roles.deployer"}
    errors = loaders.modules.state.show_sls("roles.deployer")
    assert isinstance(errors, list) and "no node pillar for stranger" in " ".join(errors)

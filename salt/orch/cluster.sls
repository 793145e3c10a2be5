{#- Ordered rollout: salt-run state.orch orch.cluster
    the deployer, the lanservices primary before its secondary, the k3s server before the
    other compute nodes (its agents); then every node's mine data and the provisioned marker
    (from then on a minion restart is not a rebuild, and a re-flashed node is rebuilt by
    orch.rebuild). Each step requires the one before, so the first failing step stops the
    rollout; its comment names the minions that failed and its changes the failed states.
    Once the pair serves, the bootstrap router's DHCP is handed over to it.
    Targets are minion IDs from the inventory (via the cluster runner), so a minion that
    merely claims a role in its grains is not rolled out as one. #}
{%- from 'orch/map.jinja' import orch_cluster with context %}
{%- set orch = orch_cluster() | load_json %}
{%- set state_timeout = orch.state_timeout %}
{%- set nodes = orch.nodes %}
{%- set pair = orch.pair %}
{%- set k3s_server = orch.k3s_server %}
{%- set steps = [
      ('deployer', orch.deployer),
      ('lanservices-primary', [pair.primary]),
      ('lanservices-secondary', [pair.secondary]),
      ('compute-k3s-server', [k3s_server]),
      ('compute-agents', orch.compute | reject('eq', k3s_server) | list),
    ] %}

{#- the custom modules first: a highstate does not sync them (salt/minion/extensions.sls) and a
    node's first render may call them #}
orch-cluster-extension-modules-salt-function:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ nodes | join(',') }}
    - tgt_type: list
{%- set previous = ['orch-cluster-extension-modules-salt-function'] %}
{%- for step, targets in steps if targets %}

orch-cluster-{{ step }}-salt-state:
  salt.state:
    - timeout: {{ state_timeout }}
    - tgt: {{ targets | join(',') }}
    - tgt_type: list
    - highstate: True
    - require:
      - salt: {{ previous[-1] }}
{%-   do previous.append('orch-cluster-' ~ step ~ '-salt-state') %}
{%- endfor %}

{#- the bootstrap router's DHCP stops once the pair serves (nothing without a router) #}
orch-cluster-router-handover-salt-runner:
  salt.runner:
    - name: cluster.router_handover
    - require:
      - salt: orch-cluster-lanservices-secondary-salt-state

orch-cluster-mine-update-salt-function:
  salt.function:
    - name: mine.update
    - tgt: {{ nodes | join(',') }}
    - tgt_type: list
    - require:
      - salt: {{ previous[-1] }}

orch-cluster-provisioned-salt-runner:
  salt.runner:
    - name: cluster.mark_provisioned
    - nodes: {{ nodes | json }}
    - require:
      - salt: orch-cluster-mine-update-salt-function
      - salt: orch-cluster-router-handover-salt-runner

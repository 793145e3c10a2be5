{#- Ordered rollout: the deployer, then the lanservices primary before its secondary, then
    the compute nodes. Targets are minion IDs from the inventory (via the cluster runner),
    so a minion that merely claims a role in its grains is not rolled out as one. #}
{%- set deployers = salt['saltutil.runner']('cluster.nodes', role='deployer') %}
{%- set pair = salt['saltutil.runner']('cluster.lanservices') %}
{%- set compute = salt['saltutil.runner']('cluster.nodes', role='compute') %}

orch-cluster-deployer-salt-state:
  salt.state:
    - tgt: {{ deployers | join(',') }}
    - tgt_type: list
    - highstate: True

orch-cluster-lanservices-primary-salt-state:
  salt.state:
    - tgt: {{ pair.primary }}
    - highstate: True
    - require:
      - salt: orch-cluster-deployer-salt-state

orch-cluster-lanservices-secondary-salt-state:
  salt.state:
    - tgt: {{ pair.secondary }}
    - highstate: True
    - require:
      - salt: orch-cluster-lanservices-primary-salt-state

orch-cluster-compute-salt-state:
  salt.state:
    - tgt: {{ compute | join(',') }}
    - tgt_type: list
    - highstate: True
    - require:
      - salt: orch-cluster-lanservices-secondary-salt-state

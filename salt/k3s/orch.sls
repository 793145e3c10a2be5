{#- Orchestration: salt-run state.orch k3s.orch
    Before a re-flashed compute node is highstated (or when its k3s agent logs "Node password
    rejected"): on the k3s server, delete the Node objects left by earlier lives of the
    compute nodes, recognised by their machine-id (the master's grains cache holds each
    node's current one). Ready nodes are never touched. #}
{#- on the master: its reads are in salt/orch/map.jinja with the other orchestrations' (the
    k3s map reads a node's pillar, which the master has not) #}
{%- from 'orch/map.jinja' import k3s_orch with context %}
{%- set orch = k3s_orch() | load_json %}
{%- set compute = orch.compute %}
{%- set machine_ids = orch.machine_ids %}

k3s-orch-rejoin-salt-state:
  salt.state:
    - tgt: {{ compute | join(',') }}
    - tgt_type: list
    - sls: k3s.rejoin
    - pillar:
        k3s_rejoin: {{ machine_ids | json }}

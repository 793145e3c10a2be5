{#- Orchestration: salt-run state.orch k3s.orch
    Before a re-flashed compute node is highstated (or when its k3s agent logs "Node password
    rejected"): on the k3s server, delete the Node objects left by earlier lives of the
    compute nodes, recognised by their machine-id (the master's grains cache holds each
    node's current one). Ready nodes are never touched. #}
{%- set compute = salt['saltutil.runner']('cluster.nodes', role='compute') %}
{%- set cached = salt['saltutil.runner']('cache.grains', tgt=compute | join(','), tgt_type='list') %}
{%- set machine_ids = {} %}
{%- for name in compute if cached.get(name, {}).get('machine_id') %}
{%-   do machine_ids.update({name: cached[name]['machine_id']}) %}
{%- endfor %}

k3s-orch-rejoin-salt-state:
  salt.state:
    - tgt: {{ compute | join(',') }}
    - tgt_type: list
    - sls: k3s.rejoin
    - pillar:
        k3s_rejoin: {{ machine_ids | json }}

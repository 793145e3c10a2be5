{#- Rebuild one node: salt-run state.orch orch.rebuild pillar='{"node": "gamma"}'
    Started by the reactor when a minion starts (salt/reactor/minion-start.sls) and by
    salt-run cluster.rebuild. cluster.build_plan decides, from the inventory, the node's
    provisioned marker and the master's records:
      ignore   not an inventory node, or a new node that orch.cluster / cluster.rebuild brings up
      refresh  provisioned already (a plain minion restart): its mine data only
      build    re-flashed or asked for: lock, highstate, refresh what depends on it, health
               gate, provisioned marker, unlock
    Every step requires the one before: the first failure stops the build, names the node and
    the state, and releases the lock (the lock also expires by itself). #}
{%- from 'orch/map.jinja' import orch_rebuild with context %}
{%- set orch = orch_rebuild() | load_json %}
{%- set state_timeout = orch.state_timeout %}
{%- set node = orch.node %}
{%- set plan = orch.plan %}
{%- if plan.action == 'refresh' %}

orch-rebuild-{{ node }}-mine-update-salt-function:
  salt.function:
    - name: mine.update
    - tgt: {{ node }}
{%- elif plan.action != 'build' %}

orch-rebuild-{{ node }}-nothing-test-succeed-without-changes:
  test.succeed_without_changes:
    - name: {{ (node ~ ': ' ~ plan.reason) | json }}
{%- else %}
{%-   set steps = [] %}
{#-   the lock's owner: only this run releases it (a refused lock is someone else's) #}
{%-   set owner = orch.owner %}

orch-rebuild-{{ node }}-lock-salt-runner:
  salt.runner:
    - name: cluster.build_lock
    - node: {{ node }}
    - owner: {{ owner }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-lock-salt-runner') %}
{%-   if plan.survivor %}

{#- the rebuilt peer lost its lease database: its partner serves the whole pool meanwhile
    (partner-down, only from communications-interrupted), then both go back to normal #}
orch-rebuild-{{ node }}-dhcp-survivor-salt-runner:
  salt.runner:
    - name: cluster.dhcp_survivor_takes_over
    - survivor: {{ plan.survivor }}
    - require:
      - salt: {{ steps[-1] }}
{%-     do steps.append('orch-rebuild-' ~ node ~ '-dhcp-survivor-salt-runner') %}
{%-   endif %}
{%-   if plan.k3s_server %}

{#- the k3s server forgets the Node object of the node's earlier life (its machine-id changed) #}
orch-rebuild-{{ node }}-k3s-rejoin-salt-state:
  salt.state:
    - timeout: {{ state_timeout }}
    - tgt: {{ plan.k3s_server }}
    - sls: k3s.rejoin
    - pillar:
        k3s_rejoin: {{ {node: plan.machine_id} | json }}
    - require:
      - salt: {{ steps[-1] }}
{%-     do steps.append('orch-rebuild-' ~ node ~ '-k3s-rejoin-salt-state') %}
{%-   endif %}

{#- a re-flashed card has none of the custom modules; a highstate does not sync them #}
orch-rebuild-{{ node }}-extension-modules-salt-function:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ node }}
    - require:
      - salt: {{ steps[-1] }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-extension-modules-salt-function') %}

orch-rebuild-{{ node }}-highstate-salt-state:
  salt.state:
    - timeout: {{ state_timeout }}
    - tgt: {{ node }}
    - highstate: True
    - require:
      - salt: {{ steps[-1] }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-highstate-salt-state') %}
{%-   for dep in plan.dependents %}

orch-rebuild-{{ node }}-refresh-{{ dep.name }}-salt-state:
  salt.state:
    - timeout: {{ state_timeout }}
    - tgt: {{ dep.tgt | join(',') }}
    - tgt_type: list
    - sls: {{ dep.sls | json }}
    - require:
      - salt: {{ steps[-1] }}
{%-     do steps.append('orch-rebuild-' ~ node ~ '-refresh-' ~ dep.name ~ '-salt-state') %}
{%-   endfor %}

orch-rebuild-{{ node }}-healthy-salt-runner:
  salt.runner:
    - name: cluster.wait_healthy
    - node: {{ node }}
    - require:
      - salt: {{ steps[-1] }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-healthy-salt-runner') %}

orch-rebuild-{{ node }}-mine-update-salt-function:
  salt.function:
    - name: mine.update
    - tgt: {{ node }}
    - require:
      - salt: {{ steps[-1] }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-mine-update-salt-function') %}

orch-rebuild-{{ node }}-provisioned-salt-runner:
  salt.runner:
    - name: cluster.mark_provisioned
    - nodes: [{{ node }}]
    - require:
      - salt: {{ steps[-1] }}
{%-   do steps.append('orch-rebuild-' ~ node ~ '-provisioned-salt-runner') %}

orch-rebuild-{{ node }}-unlock-salt-runner:
  salt.runner:
    - name: cluster.build_unlock
    - node: {{ node }}
    - owner: {{ owner }}
    - require:
      - salt: {{ steps[-1] }}

orch-rebuild-{{ node }}-unlock-after-failure-salt-runner:
  salt.runner:
    - name: cluster.build_unlock
    - node: {{ node }}
    - owner: {{ owner }}
    - failed: True
    - onfail_any:
{%-   for step in steps[1:] %}
      - salt: {{ step }}
{%-   endfor %}
{%- endif %}

{#- Rolling maintenance: salt-run state.orch orch.maintenance [pillar='{"upgrade": true,
    "reboot": true, "nodes": [gamma, beta]}'] (defaults: upgrade and reboot every node).
    Order (maintenance.plan): compute nodes in batches of at most half of them, then the
    lanservices nodes one at a time (the one without the VIP first), then the deployer.
    A lanservices node first hands over (maintenance.drain: its peer takes the VIP and answers
    DNS on it, DHCP failover goes shut-down / partner-down), then packages, reboot, back in
    service (maintenance.undrain), and the health gate (cluster.wait_healthy: zones equal on
    both servers, DHCP failover normal, the VIP on the primary, clocks synchronised, MPI
    logins) before the next step starts. Each step requires the one before: a gate that fails
    stops the run, naming the node and the check, with the cluster still serving.
    The deployer goes last and its reboot ends the run (the master goes down with it). #}
{%- from 'orch/map.jinja' import orch_maintenance with context %}
{%- set orch = orch_maintenance() | load_json %}
{%- set upgrade = orch.upgrade %}
{%- set reboot = orch.reboot %}
{%- set plan = orch.plan %}
{%- if plan.unknown %}

orch-maintenance-unknown-nodes-test-fail-without-changes:
  test.fail_without_changes:
    - name: {{ ('not in the inventory: ' ~ plan.unknown | join(', ')) | json }}
{%- else %}
{%-   set steps = [] %}
{#-   every step requires the one before it: the first failure stops the run #}
{%-   macro after() %}
{%-     if steps %}
    - require:
      - salt: {{ steps[-1] }}
{%-     endif %}
{%-   endmacro %}
{%-   set groups = [] %}
{%-   for batch in plan.compute %}
{%-     do groups.append(('compute-' ~ loop.index, batch, 'compute')) %}
{%-   endfor %}
{%-   for node in plan.lanservices %}
{%-     do groups.append((node, [node], 'lanservices')) %}
{%-   endfor %}
{%-   for node in plan.deployer %}
{%-     do groups.append((node, [node], 'deployer')) %}
{%-   endfor %}
{%-   for label, targets, role in groups %}
{%-     set prefix = 'orch-maintenance-' ~ label %}
{%-     if role == 'lanservices' %}

{{ prefix }}-drain-salt-runner:
  salt.runner:
    - name: maintenance.drain
    - node: {{ targets[0] }}
    {{- after() }}
{%-       do steps.append(prefix ~ '-drain-salt-runner') %}
{%-     endif %}
{%-     if upgrade %}

{{ prefix }}-upgrade-salt-function:
  salt.function:
    - name: pkg.upgrade
    - tgt: {{ targets | join(',') }}
    - tgt_type: list
    - kwarg:
        refresh: True
    - timeout: 1800
    {{- after() }}
{%-       do steps.append(prefix ~ '-upgrade-salt-function') %}
{%-     endif %}
{%-     if reboot and role == 'deployer' %}

{#- the last step: the master reboots too, so nothing can wait for it (salt-run cluster.status) #}
{{ prefix }}-reboot-salt-function:
  salt.function:
    - name: cmd.run_bg
    - tgt: {{ targets[0] }}
    - arg:
      - sleep 10; systemctl reboot
    {{- after() }}
{%-     elif reboot %}

{{ prefix }}-reboot-salt-runner:
  salt.runner:
    - name: maintenance.reboot
    - nodes: {{ targets | json }}
    {{- after() }}
{%-       do steps.append(prefix ~ '-reboot-salt-runner') %}
{%-     endif %}
{%-     if role == 'lanservices' %}

{{ prefix }}-undrain-salt-runner:
  salt.runner:
    - name: maintenance.undrain
    - node: {{ targets[0] }}
    {{- after() }}
{%-       do steps.append(prefix ~ '-undrain-salt-runner') %}
{%-     endif %}
{%-     if role != 'deployer' %}
{%-       for node in targets %}

{{ prefix }}-{{ node }}-healthy-salt-runner:
  salt.runner:
    - name: cluster.wait_healthy
    - node: {{ node }}
    - clock: True
    {{- after() }}
{%-         do steps.append(prefix ~ '-' ~ node ~ '-healthy-salt-runner') %}
{%-       endfor %}
{%-     endif %}
{%-   endfor %}
{%- endif %}

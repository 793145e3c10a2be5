{#- A minion (re)started: orch.rebuild decides what that means (cluster.build_plan): not in
    the inventory -> nothing; provisioned (its cluster_provisioned grain rides in the start
    event, start_event_grains in salt/minion) -> refresh its mine data only; re-flashed or
    asked for by cluster.rebuild -> rebuild it, under a per-node lock.
    cluster.orchestrate is state.orchestrate that may run beside other orchestrations (Salt's
    refuses while any state job runs on the master, e.g. another node's build). #}
reactor-minion-start-orch-rebuild:
  runner.cluster.orchestrate:
    - args:
      - mods: orch.rebuild
      - pillar:
          node: {{ data['id'] | json }}
          provisioned: {{ data.get('grains', {}).get('cluster_provisioned') | json }}

{#- The DHCP pair gave a lease to a node of the inventory (the dhcp_commits beacon of a
    lanservices minion, salt/dhcpd): cluster.dhcp_lease decides. A node whose minion is gone is
    rebuilt with no command when it has rebuild: auto (zero-touch), else it waits for
    salt-run cluster.rebuild; a lease renewal changes nothing. #}
{%- if data.get('node') %}
reactor-dhcp-lease-cluster-dhcp-lease:
  runner.cluster.dhcp_lease:
    - args:
      - node: {{ data['node'] | json }}
      - server: {{ data['id'] | json }}
      - address: {{ data.get('address') | json }}
{%- endif %}

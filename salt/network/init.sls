{#- The node's inventory address, static, matched by the node's MAC: applied at first contact
    (bootstrap.minion over salt-ssh: the card still has the address the DHCP reservation gave
    it, so the session goes on) and kept by every highstate. #}
{%- from 'network/map.jinja' import network with context %}
{%- if network.manager == 'networkd' %}

network-static-file-managed:
  file.managed:
    - name: {{ network.networkd_file }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/network): the node's inventory address, static
        [Match]
        MACAddress={{ network.mac }}

        [Network]
        Address={{ network.address }}
        Gateway={{ network.gateway }}
        LinkLocalAddressing=no
        IPv6AcceptRA=no

{#- networkd reconfigures the links a changed file matches: the leased address becomes static #}
network-static-cmd-run:
  cmd.run:
    - name: networkctl reload
    - onchanges:
      - file: network-static-file-managed
{%- elif network.manager == 'NetworkManager' %}

{#- unproven: the lab runs networkd; Raspberry Pi OS bookworm runs NetworkManager #}
network-static-file-managed:
  file.managed:
    - name: {{ network.nm_file }}
    - mode: '0600'
    - contents: |
        # managed by Salt (salt/network): the node's inventory address, static
        [connection]
        id={{ network.nm_connection }}
        type=ethernet
        autoconnect-priority=100

        [ethernet]
        mac-address={{ network.mac }}

        [ipv4]
        method=manual
        address1={{ network.address }},{{ network.gateway }}

        [ipv6]
        method=disabled

network-static-cmd-run:
  cmd.run:
    - name: nmcli connection reload && nmcli connection up {{ network.nm_connection }}
    - onchanges:
      - file: network-static-file-managed
{%- else %}

network-static-test-show-notification:
  test.show_notification:
    - text: neither systemd-networkd nor NetworkManager runs here; the node's address is left as it is
{%- endif %}

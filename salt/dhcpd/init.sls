{#- ISC DHCP failover pair on the lanservices nodes (the primary: the node pillar's pair_role).
    Everything the clients are handed comes from the cluster model (dhcpd_failover.peer_config):
    a fixed address per inventory node by MAC, the pool, the VIP and both servers as DNS, both
    servers as NTP, next-server/filename for network boot (the file salt/tftpd serves).
    Every file dhcpd reads is checked with `dhcpd -t` before it replaces the live one. #}
{#- the map fails first on a node that is not one of the lanservices pair (peer_config) #}
{%- from 'dhcpd/map.jinja' import dhcpd, dhcpd_secrets with context %}
{%- set conf = dhcpd.peer %}
{%- set node = dhcpd.node %}
{%- if not dhcpd_secrets.omapi_key %}
{{ raise('pillar secrets:omapi_key is missing for ' ~ node.name ~ ': run bootstrap/generate-secrets on the deployer (the secrets pillar goes to the lanservices nodes only)') }}
{%- endif %}
{%- if not node.interface %}
{{ raise('no interface of ' ~ node.name ~ ' holds its inventory address ' ~ node.ip ~ ': configure the address, or name the interface in dhcpd:lookup:interface') }}
{%- endif %}
{#- no -q: it also silences the errors, which the state's comment should show #}
{%- set check_cmd = '/usr/sbin/dhcpd -4 -t -cf' %}
{#- the candidate goes beside the live file: dhcpd's AppArmor profile reads /etc/dhcp only #}
{%- set check_dir = dhcpd.config_dir %}
{%- set watched = ['dhcpd-omapi-key-file-managed', 'dhcpd-config-file-managed', 'dhcpd-defaults-file-managed',
                   'dhcpd-unit-file-managed'] + (['dhcpd-omapi-guard-file-managed'] if dhcpd.omapi.localhost_only else []) %}

dhcpd-pkg-installed:
  pkg.installed:
    - pkgs: {{ dhcpd.pkgs | json }}

dhcpd-config-dir-file-directory:
  file.directory:
    - name: {{ check_dir }}
    - makedirs: True
    - require:
      - pkg: dhcpd-pkg-installed

# The key alone is a valid dhcpd.conf: checked like the main file. Its diff is never shown.
dhcpd-omapi-key-file-managed:
  file.managed:
    - name: {{ dhcpd.omapi.key_file }}
    - source: salt://dhcpd/files/omapi.key.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0600'
    - show_changes: False
    - context:
        key_name: {{ dhcpd.omapi.key_name | json }}
        algorithm: {{ dhcpd.omapi.algorithm | json }}
        secret: {{ dhcpd_secrets.omapi_key | json }}
    - check_cmd: {{ check_cmd }}
    - tmp_dir: {{ check_dir }}
    - tmp_ext: .conf
    - require:
      - file: dhcpd-config-dir-file-directory

{%- if dhcpd.commit_hook %}

dhcpd-commit-hook-file-managed:
  file.managed:
    - name: {{ dhcpd.commit_hook }}
    - source: salt://dhcpd/files/cluster-dhcp-commit.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0755'
    - context:
        dhcpd: {{ dhcpd | json }}
{%- endif %}

dhcpd-config-file-managed:
  file.managed:
    - name: {{ dhcpd.config }}
    - source: salt://dhcpd/files/dhcpd.conf.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        dhcpd: {{ dhcpd | json }}
        conf: {{ conf | json }}
    - check_cmd: {{ check_cmd }}
    - tmp_dir: {{ check_dir }}
    - tmp_ext: .conf
    - require:
      - file: dhcpd-omapi-key-file-managed
{%- if dhcpd.commit_hook %}
      - file: dhcpd-commit-hook-file-managed
{%- endif %}

{%- if dhcpd.omapi.localhost_only %}

dhcpd-omapi-guard-file-managed:
  file.managed:
    - name: {{ dhcpd.omapi.nft_file }}
    - source: salt://dhcpd/files/omapi-localhost.nft.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        port: {{ dhcpd.omapi.port }}
        table: {{ dhcpd.omapi.nft_table | json }}
        service: {{ dhcpd.service | json }}
    - check_cmd: /usr/sbin/nft -c -f
    - require:
      - file: dhcpd-config-dir-file-directory
{%- else %}

dhcpd-omapi-guard-file-absent:
  file.absent:
    - name: {{ dhcpd.omapi.nft_file }}
{%- endif %}

dhcpd-defaults-file-managed:
  file.managed:
    - name: {{ dhcpd.defaults_file }}
    - source: salt://dhcpd/files/isc-dhcp-server.default.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        service: {{ dhcpd.service | json }}
        ip: {{ node.ip | json }}
        interface: {{ node.interface | json }}
    - require:
      - pkg: dhcpd-pkg-installed

dhcpd-unit-file-managed:
  file.managed:
    - name: {{ dhcpd.unit_file }}
    - source: salt://dhcpd/files/isc-dhcp-server.service.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        dhcpd: {{ dhcpd | json }}

dhcpd-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: dhcpd-unit-file-managed

dhcpd-service-running:
  service.running:
    - name: {{ dhcpd.service }}
    - enable: True
    - require:
      - cmd: dhcpd-systemd-daemon-reload-cmd-run
    - watch:
      - pkg: dhcpd-pkg-installed
{%- for sid in watched %}
      - file: {{ sid }}
{%- endfor %}
{%- if dhcpd.commit_hook %}

{#- the hook's records reach the master as events (_beacons/dhcp_commits.py); the reactor's
    cluster.dhcp_lease decides (zero-touch rebuild of a node with rebuild: auto) #}
dhcpd-commits-beacon-present:
  beacon.present:
    - name: dhcp_commits
    - save: True
    - spool: {{ dhcpd.commit_spool }}
    - interval: {{ dhcpd.commit_beacon_interval }}
{%- endif %}

{#- Time ordering (issue 12): a systemd drop-in orders dhcpd after time-sync.target (chrony-wait,
    salt/chrony). It only orders later starts, so the running dhcpd is not restarted for it. #}
dhcpd-time-sync-dropin-file-managed:
  file.managed:
    - name: {{ dhcpd.unit_file }}.d/time-sync.conf
    - source: salt://dhcpd/files/time-sync.conf
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'

dhcpd-time-sync-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: dhcpd-time-sync-dropin-file-managed
    - require_in:
      - service: dhcpd-service-running

{#- keepalived on the lanservices pair: the VIP by VRRP (version 3, sub-second adverts, unicast
    to the peer, adverts from other sources dropped; version 2 adds PASS authentication from
    secrets), the primary with the higher priority, health checks on named (its process, and a
    vrrp_script asking it). The config is checked with `keepalived -t` before it is used. #}
{%- from 'keepalived/map.jinja' import keepalived, keepalived_secrets with context %}
{%- set node = keepalived.node %}
{%- set paths = keepalived.paths %}
{%- set v2 = keepalived.vrrp_version | int == 2 %}
{%- set password = keepalived_secrets.vrrp_password %}
{%- set problem = none %}
{%- if not node.role %}
{%-   set problem = node.name ~ ' is not one of the lanservices pair of the inventory: keepalived is not configured here' %}
{%- elif keepalived.vrrp_version | int not in [2, 3] %}
{%-   set problem = 'keepalived:vrrp_version is ' ~ keepalived.vrrp_version ~ ': 2 or 3' %}
{%- elif v2 and not password %}
{%-   set problem = "no secrets:vrrp_password in this minion's pillar: run bootstrap/generate-secrets on the deployer" %}
{%- elif v2 and password | length > 8 %}
{%-   set problem = 'secrets:vrrp_password has ' ~ password | length ~ ' characters: VRRP PASS authentication carries at most 8' %}
{%- elif v2 and keepalived.advert_int | float != keepalived.advert_int | float | round %}
{%-   set problem = 'keepalived:advert_int ' ~ keepalived.advert_int ~ ' with VRRP version 2: whole seconds only (sub-second adverts need version 3)' %}
{%- elif not node.interface %}
{%-   set problem = 'no interface of ' ~ node.name ~ ' holds its inventory IP ' ~ node.ip ~ ': set keepalived:lookup:interface' %}
{%- elif keepalived.priority.primary + keepalived.check.weight >= keepalived.priority.secondary %}
{%-   set problem = 'keepalived priorities: primary ' ~ keepalived.priority.primary ~ ' with check weight ' ~ keepalived.check.weight ~ ' must drop below secondary ' ~ keepalived.priority.secondary %}
{%- elif keepalived.process.enabled and keepalived.priority.primary + keepalived.process.weight >= keepalived.priority.secondary %}
{%-   set problem = 'keepalived priorities: primary ' ~ keepalived.priority.primary ~ ' with process weight ' ~ keepalived.process.weight ~ ' must drop below secondary ' ~ keepalived.priority.secondary %}
{%- endif %}

{%- if problem %}

keepalived-config-problem-test-fail-without-changes:
  test.fail_without_changes:
    - name: keepalived
    - comment: {{ problem | json }}

{%- else %}

keepalived-packages-pkg-installed:
  pkg.installed:
    - pkgs: {{ keepalived.pkgs | json }}

keepalived-conf-dir-file-directory:
  file.directory:
    - name: {{ paths.conf_dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True
    - require:
      - pkg: keepalived-packages-pkg-installed

{#- the state dir is under /run: systemd-tmpfiles creates it again at every boot (a highstate
    after a reboot then finds it in place), this state the first time #}
keepalived-state-dir-tmpfiles-file-managed:
  file.managed:
    - name: {{ paths.tmpfiles }}
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/keepalived): the notify script's state files (vip.status)
        d {{ paths.state_dir }} 0755 root root -

keepalived-state-dir-file-directory:
  file.directory:
    - name: {{ paths.state_dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

{#- with enable_script_security, scripts must be root-owned and not writable by others #}
{%- for sid, path, source in [('check-script', paths.check_script, 'check-named.jinja'),
                              ('notify-script', paths.notify_script, 'notify-state.jinja')] %}

keepalived-{{ sid }}-file-managed:
  file.managed:
    - name: {{ path }}
    - source: salt://keepalived/files/{{ source }}
    - template: jinja
    - context:
        keepalived: {{ keepalived | json }}
    - user: root
    - group: root
    - mode: '0755'
    - require:
      - file: keepalived-conf-dir-file-directory
{%- endfor %}

{#- created in service (0); never rewritten here: a highstate during maintenance keeps the drain #}
keepalived-maintenance-file-managed:
  file.managed:
    - name: {{ paths.maintenance_file }}
    - contents: '0'
    - replace: False
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'

keepalived-config-file-managed:
  file.managed:
    - name: {{ paths.config }}
    - source: salt://keepalived/files/keepalived.conf.jinja
    - template: jinja
    - context:
        keepalived: {{ keepalived | json }}
{%- if v2 %}
        vrrp_password: {{ password | json }}
{%- endif %}
    - user: root
    - group: root
    - mode: '0640'
    # with VRRP version 2 it holds the VRRP password: no diff in the state output
    - show_changes: False
    - check_cmd: {{ keepalived.check_cmd | json }}
    - require:
      - file: keepalived-check-script-file-managed
      - file: keepalived-notify-script-file-managed
      - file: keepalived-state-dir-file-directory
      - file: keepalived-maintenance-file-managed

{#- zero-loss VIP moves: the VIP sits on lo of both peers (named always has its socket, and a
    node that just handed the VIP over still answers the queries in flight to it); keepalived
    moves only the copy on the LAN interface, the one that answers ARP. arp_ignore 1: ARP is
    answered only for addresses of the interface asked (never for lo's VIP); arp_announce 2:
    ARP requests carry the interface's own address as the sender. #}
{%- for key, value in keepalived.arp_sysctl.items() %}

keepalived-{{ key | replace('.', '-') }}-sysctl-present:
  sysctl.present:
    - name: {{ key }}
    - value: {{ value }}
    - require_in:
      - service: keepalived-vip-on-lo-service-running
{%- endfor %}

keepalived-vip-on-lo-unit-file-managed:
  file.managed:
    - name: /etc/systemd/system/{{ keepalived.vip_on_lo_unit }}
    - user: root
    - group: root
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/keepalived): the cluster VIP on lo, on both lanservices peers
        [Unit]
        Description=Cluster VIP {{ node.vip }} on lo (answers queries in flight after a VIP move)
        DefaultDependencies=no
        After=systemd-sysctl.service
        Before=network-pre.target named.service keepalived.service
        Wants=network-pre.target

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/ip address replace {{ node.vip }}/32 dev lo
        ExecStop=/bin/ip address del {{ node.vip }}/32 dev lo

        [Install]
        WantedBy=multi-user.target

keepalived-vip-on-lo-service-running:
  service.running:
    - name: {{ keepalived.vip_on_lo_unit }}
    - enable: True
    - watch:
      - file: keepalived-vip-on-lo-unit-file-managed
    - require_in:
      - service: keepalived-service-running

keepalived-service-running:
  service.running:
    - name: {{ keepalived.service }}
    - enable: True
    - reload: True
    - watch:
      - file: keepalived-config-file-managed
      - file: keepalived-check-script-file-managed
      - file: keepalived-notify-script-file-managed
{%- endif %}

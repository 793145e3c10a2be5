{#- BIND on the lanservices pair (primary = first lanservices node by IP, secondary = second).
    Order: keys -> named.conf (named-checkconf) -> zone data (primary, dnszone.managed:
    named-checkzone, then rndc reload <zone>) -> the service, reloaded when its config changes. #}
{%- from 'bind/map.jinja' import bind, bind_secrets with context %}
{%- set node = bind.node %}
{%- set paths = bind.paths %}
{%- set is_primary = node.role == 'primary' %}
{%- set contact = bind.contact if bind.contact.endswith('.') else bind.contact ~ '.' ~ node.domain ~ '.' %}

{%- if not node.role %}

bind-not-a-lanservices-node-test-fail-without-changes:
  test.fail_without_changes:
    - name: bind
    - comment: "{{ node.name }} is not one of the lanservices pair of the inventory: BIND is not configured here"

{%- elif not bind_secrets.tsig_key %}

bind-tsig-secret-missing-test-fail-without-changes:
  test.fail_without_changes:
    - name: bind
    - comment: "no secrets:tsig_key in this minion's pillar: run bootstrap/generate-secrets on the deployer"

{%- else %}

bind-packages-pkg-installed:
  pkg.installed:
    - pkgs: {{ bind.pkgs | json }}

{#- the Debian package's own directories, with the package's owners and modes #}
{%- for sid, path, mode in [('conf-dir', paths.conf_dir, '2755'), ('working-dir', paths.directory, '0775'),
                             ('run-dir', paths.run_dir, '0775')] + ([('zone-dir', paths.zone_dir, '0755')] if is_primary else []) %}

bind-{{ sid }}-file-directory:
  file.directory:
    - name: {{ path }}
    - user: root
    - group: {{ bind.group }}
    - mode: '{{ mode }}'
    - makedirs: True
    - require:
      - pkg: bind-packages-pkg-installed
{%- endfor %}

{#- rndc's key: the Debian package makes it at install; made here when it is missing #}
bind-rndc-key-cmd-run:
  cmd.run:
    - name: rndc-confgen -a -k rndc-key -c {{ paths.rndc_key }} -u {{ bind.user }}
    - creates: {{ paths.rndc_key }}
    - require:
      - file: bind-conf-dir-file-directory

bind-tsig-key-file-managed:
  file.managed:
    - name: {{ paths.tsig_key }}
    - source: salt://bind/files/tsig.key.jinja
    - template: jinja
    - context:
        bind: {{ bind | json }}
        secret: {{ bind_secrets.tsig_key | json }}
    - user: root
    - group: {{ bind.group }}
    - mode: '0640'
    - show_changes: False
    - require:
      - file: bind-conf-dir-file-directory

bind-config-file-managed:
  file.managed:
    - name: {{ paths.config }}
    - source: salt://bind/files/named.conf.jinja
    - template: jinja
    - context:
        bind: {{ bind | json }}
    - user: root
    - group: {{ bind.group }}
    - mode: '0644'
    # the candidate is checked (with the key files it includes) before it replaces the config
    - check_cmd: named-checkconf
    - require:
      - cmd: bind-rndc-key-cmd-run
      - file: bind-tsig-key-file-managed
      - file: bind-working-dir-file-directory
      - file: bind-run-dir-file-directory
{%- if is_primary %}
{%- for zone, kind in [(node.zones[0], 'forward'), (node.zones[1], 'reverse')] %}

bind-zone-{{ kind }}-dnszone-managed:
  dnszone.managed:
    - name: {{ zone.name }}
    - path: {{ paths.zone_dir }}/db.{{ zone.name }}
    - records: {{ zone.records | json }}
    - ns: {{ node.ns | json }}
    - mname: {{ node.ns[0] }}
    - contact: {{ contact }}
    - ttl: {{ bind.ttl }}
    - soa: {{ bind.soa | json }}
    - serial_servers: {{ (['127.0.0.1#' ~ bind.port, node.peer_ip ~ '#' ~ bind.port] if bind.serial_from_servers else []) | json }}
    - user: root
    - group: {{ bind.group }}
    - mode: '0644'
    - rndc_key: {{ paths.rndc_key }}
    - rndc_server: 127.0.0.1
    - rndc_port: {{ bind.control_port }}
    - require:
      - file: bind-zone-dir-file-directory
      - file: bind-config-file-managed
{%- endfor %}
{%- endif %}

bind-service-running:
  service.running:
    - name: {{ bind.service }}
    - enable: True
    - reload: True
    - watch:
      - file: bind-config-file-managed
      - file: bind-tsig-key-file-managed
      - cmd: bind-rndc-key-cmd-run
{%- if is_primary %}
    - require:
      - dnszone: bind-zone-forward-dnszone-managed
      - dnszone: bind-zone-reverse-dnszone-managed
{%- endif %}

{#- Time ordering (issue 12): a systemd drop-in orders named after time-sync.target (chrony-wait,
    salt/chrony). It only orders later starts, so the running named is not restarted for it. #}
bind-time-sync-dropin-file-managed:
  file.managed:
    - name: /etc/systemd/system/{{ bind.service }}.service.d/time-sync.conf
    - source: salt://bind/files/time-sync.conf
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'

bind-time-sync-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: bind-time-sync-dropin-file-managed
    - require_in:
      - service: bind-service-running
{%- endif %}

{#- NTP on every node (chrony). The lanservices nodes serve the cluster subnet: upstream from
    the inventory (cluster:network:ntp_upstream), each other as a source, `local stratum ...
    orphan` while no upstream is reachable, the other's time on (re)start (initstepslew), and
    the subnet served only after that (a chrony.service drop-in). Every other node is a client of
    both (and of the VIP, a third vote). Server or client is decided by the inventory
    (chrony.node, from the node pillar), never by grains. chrony-wait.service, bounded, makes
    time-sync.target mean "synchronised" (dhcpd and named start after it). #}
{%- from 'chrony/map.jinja' import chrony with context %}
{%- set is_server = chrony.node.server %}
{%- set nspawn = chrony.nspawn %}
{%- set dropin_state = 'chrony-nspawn-dropin-file-' ~ ('managed' if nspawn else 'absent') %}
{%- set serve_state = 'chrony-serve-dropin-file-' ~ ('managed' if is_server else 'absent') %}

chrony-pkg-installed:
  pkg.installed:
    - pkgs: {{ chrony.pkgs | json }}

chrony-config-file-managed:
  file.managed:
    - name: {{ chrony.config }}
    - makedirs: True
    - source: salt://chrony/files/chrony.conf.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        chrony: {{ chrony | json }}
        node: {{ chrony.node.name | json }}
        server: {{ is_server | json }}
        upstream: {{ chrony.node.upstream | json }}
        servers: {{ chrony.node.servers | json }}
        vip: {{ chrony.node.vip | json }}
        subnet: {{ chrony.node.subnet | json }}
    # chronyd -p parses the candidate (unknown or malformed directives fail) and exits
    - check_cmd: /usr/sbin/chronyd -p -f
    - require:
      - pkg: chrony-pkg-installed

chrony-defaults-file-managed:
  file.managed:
    - name: {{ chrony.defaults_file }}
    - makedirs: True
    - source: salt://chrony/files/chrony.default.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        nspawn: {{ nspawn | json }}
        daemon_opts: {{ (chrony.nspawn_daemon_opts if nspawn else chrony.daemon_opts) | json }}
    - require:
      - pkg: chrony-pkg-installed

{%- if nspawn %}

chrony-nspawn-dropin-file-managed:
  file.managed:
    - name: {{ chrony.nspawn_dropin }}
    - source: salt://chrony/files/nspawn.conf.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
{%- else %}

chrony-nspawn-dropin-file-absent:
  file.absent:
    - name: {{ chrony.nspawn_dropin }}
{%- endif %}

{%- if is_server %}

chrony-serve-dropin-file-managed:
  file.managed:
    - name: {{ chrony.serve_dropin }}
    - source: salt://chrony/files/serve.conf.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        node: {{ chrony.node.name | json }}
        subnet: {{ chrony.node.subnet | json }}
        socket: {{ chrony.command_socket | json }}
{%- else %}

chrony-serve-dropin-file-absent:
  file.absent:
    - name: {{ chrony.serve_dropin }}
{%- endif %}

chrony-wait-dropin-file-managed:
  file.managed:
    - name: {{ chrony.wait.dropin }}
    - source: salt://chrony/files/chrony-wait.conf.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        server: {{ is_server | json }}
        wait: {{ chrony.wait | json }}
        local_stratum: {{ chrony.local_stratum }}
        # chronyd -x (nspawn) never corrects the clock: its "remaining correction" means nothing
        max_correction: {{ (0 if nspawn else chrony.wait.max_correction) | json }}
    - require:
      - pkg: chrony-pkg-installed

chrony-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: {{ dropin_state }}
      - file: {{ serve_state }}
      - file: chrony-wait-dropin-file-managed

chrony-service-running:
  service.running:
    - name: {{ chrony.service }}
    - enable: True
    - require:
      - cmd: chrony-systemd-daemon-reload-cmd-run
    - watch:
      - pkg: chrony-pkg-installed
      - file: chrony-config-file-managed
      - file: chrony-defaults-file-managed
      - file: {{ dropin_state }}
      - file: {{ serve_state }}

# enabled, not started: it orders the next boot (started now, it would hold the highstate up to
# its timeout on a node that is not synchronised yet)
chrony-wait-service-enabled:
  service.enabled:
    - name: {{ chrony.wait.service }}
    - require:
      - cmd: chrony-systemd-daemon-reload-cmd-run
      - service: chrony-service-running

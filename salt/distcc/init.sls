{#- distcc server (compute nodes): distccd listening on the node's inventory IP, accepting
    jobs from the cluster's nodes only (never from a DHCP guest of the same subnet: distccd
    runs any compiler command line it is sent); plus the client side (distcc.client). #}
{%- from 'distcc/map.jinja' import distcc with context %}
include:
  - distcc.client

distcc-server-defaults-file-managed:
  file.managed:
    - name: {{ distcc.defaults_file }}
    - user: root
    - group: root
    - mode: '0644'
    - source: salt://distcc/files/default-distcc.jinja
    - template: jinja
    - context:
        distcc: {{ distcc | json }}
        listener: {{ distcc.node.ip | json }}
        allowed: {{ distcc.allowed | json }}
    # the init script sources it: a syntax error never replaces a working file
    - check_cmd: /bin/sh -n
    - require:
      - sls: distcc.client

distcc-server-dropin-file-managed:
  file.managed:
    - name: {{ distcc.dropin }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/distcc): distccd binds the node's inventory IP, so wait for it
        [Unit]
        Wants=network-online.target
        After=network-online.target

distcc-server-systemd-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: distcc-server-dropin-file-managed

distcc-server-service-running:
  service.running:
    - name: {{ distcc.service }}
    - enable: True
    - require:
      - cmd: distcc-server-systemd-reload-cmd-run
    - watch:
      - file: distcc-server-defaults-file-managed
      - pkg: distcc-client-pkg-installed

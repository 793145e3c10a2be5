{#- The deployer serves the master's status page data (statuspage.publish writes it) to the
    lanservices pair: Python's static file server, read-only, as a throw-away system user. #}
{%- from 'statusfeed/map.jinja' import statusfeed with context %}

statusfeed-dir-file-directory:
  file.directory:
    - name: {{ statusfeed.dir }}
    - user: root
    - group: root
    - mode: '0755'

statusfeed-unit-file-managed:
  file.managed:
    - name: {{ statusfeed.unit_file }}
    - source: salt://statusfeed/files/cluster-status-feed.service.jinja
    - template: jinja
    - mode: '0644'
    - context:
        statusfeed: {{ statusfeed | json }}

statusfeed-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: statusfeed-unit-file-managed

statusfeed-service-running:
  service.running:
    - name: {{ statusfeed.service }}
    - enable: True
    - require:
      - file: statusfeed-dir-file-directory
      - cmd: statusfeed-systemd-daemon-reload-cmd-run
    - watch:
      - file: statusfeed-unit-file-managed

{#- BusyBox httpd on the lanservices nodes, from a chroot (systemd RootDirectory=) as an
    unprivileged system user, on the port of httpd:port (defaults.yaml, httpd:lookup:port):
    the inventory page (inventory.html, cluster.json) here; the live status page at / comes
    from salt/statuspage. #}
{%- from 'httpd/map.jinja' import httpd with context %}
{%- from 'tftpd/map.jinja' import tftpd with context %}
{%- set page_context = dict(httpd.page, port=httpd.port, boot_file=tftpd.boot_file) %}
{%- set chroot = httpd.chroot %}

httpd-pkg-installed:
  pkg.installed:
    - pkgs: {{ httpd.pkgs | json }}

# The server's account: no home, no shell; it owns nothing in the chroot.
httpd-user-present:
  user.present:
    - name: {{ httpd.user }}
    - system: True
    - usergroup: True
    - createhome: False
    - home: /nonexistent
    - shell: /usr/sbin/nologin

{%- for dir in ['', '/bin', '/etc', '/www'] %}

httpd-chroot{{ dir | replace('/', '-') }}-file-directory:
  file.directory:
    - name: {{ chroot ~ dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True
{%-   if dir %}
    - require:
      - file: httpd-chroot-file-directory
{%-   endif %}
{%- endfor %}

# The only program in the chroot: busybox-static needs no libraries there.
httpd-chroot-busybox-file-managed:
  file.managed:
    - name: {{ chroot }}/bin/busybox
    - source: {{ httpd.busybox }}
    - user: root
    - group: root
    - mode: '0755'
    - require:
      - pkg: httpd-pkg-installed
      - file: httpd-chroot-bin-file-directory

httpd-chroot-config-file-managed:
  file.managed:
    - name: {{ chroot }}/etc/httpd.conf
    - source: salt://httpd/files/httpd.conf.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: httpd-chroot-etc-file-directory

httpd-page-inventory-file-managed:
  file.managed:
    - name: {{ chroot }}/www/inventory.html
    - source: salt://httpd/files/inventory.html.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context: {{ page_context | json }}
    - require:
      - file: httpd-chroot-www-file-directory

httpd-page-json-file-managed:
  file.managed:
    - name: {{ chroot }}/www/cluster.json
    - source: salt://httpd/files/cluster.json.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context: {{ page_context | json }}
    - require:
      - file: httpd-chroot-www-file-directory

httpd-defaults-file-managed:
  file.managed:
    - name: {{ httpd.defaults_file }}
    - makedirs: True
    - source: salt://httpd/files/bbhttpd.default.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        httpd: {{ httpd | json }}

httpd-unit-file-managed:
  file.managed:
    - name: {{ httpd.unit_file }}
    - makedirs: True
    - source: salt://httpd/files/bbhttpd.service.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        httpd: {{ httpd | json }}

httpd-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: httpd-unit-file-managed

httpd-service-running:
  service.running:
    - name: {{ httpd.service }}
    - enable: True
    - require:
      - cmd: httpd-systemd-daemon-reload-cmd-run
      - file: httpd-page-inventory-file-managed
      - file: httpd-page-json-file-managed
    - watch:
      - user: httpd-user-present
      - file: httpd-chroot-busybox-file-managed
      - file: httpd-chroot-config-file-managed
      - file: httpd-defaults-file-managed
      - file: httpd-unit-file-managed

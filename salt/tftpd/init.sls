{#- TFTP (tftpd-hpa) serving the network-boot tree that DHCP points at (next-server/filename):
    the PXELINUX loader from the Debian packages plus configurations generated from the
    inventory (one per node, by MAC, and a default for everyone else). #}
{%- from 'tftpd/map.jinja' import tftpd with context %}
{%- if tftpd.boot_file not in tftpd.loader_files %}
{{ raise('tftpd:boot_file ' ~ tftpd.boot_file ~ ' is not one of tftpd:loader_files (' ~ tftpd.loader_files | join(', ') ~ '): DHCP would hand out a file the tree does not have') }}
{%- endif %}
{%- set nodes = tftpd.nodes %}
{%- set domain = tftpd.domain %}
{%- set tree = tftpd.tree %}
{%- set cfg_dir = tree ~ '/pxelinux.cfg' %}

tftpd-pkg-installed:
  pkg.installed:
    - pkgs: {{ tftpd.pkgs | json }}

tftpd-tree-file-directory:
  file.directory:
    - name: {{ tree }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True
    - require:
      - pkg: tftpd-pkg-installed

{%- for file, path in tftpd.loader_files | dictsort %}

tftpd-loader-{{ file | replace('.', '-') }}-file-managed:
  file.managed:
    - name: {{ tree }}/{{ file }}
    - source: {{ path }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: tftpd-tree-file-directory
{%- endfor %}

tftpd-readme-file-managed:
  file.managed:
    - name: {{ tree }}/README.txt
    - source: salt://tftpd/files/README.txt.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        domain: {{ domain | json }}
        servers: {{ tftpd.servers | json }}
        boot_file: {{ tftpd.boot_file | json }}
        nodes: {{ nodes | json }}
    - require:
      - file: tftpd-tree-file-directory

tftpd-pxelinux-cfg-default-file-managed:
  file.managed:
    - name: {{ cfg_dir }}/default
    - source: salt://tftpd/files/pxelinux.cfg.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        domain: {{ domain | json }}
        node: null
    - require:
      - file: tftpd-tree-file-directory

{%- for node in nodes %}

tftpd-pxelinux-cfg-{{ node.name }}-file-managed:
  file.managed:
    - name: {{ cfg_dir }}/01-{{ node.mac | replace(':', '-') }}
    - source: salt://tftpd/files/pxelinux.cfg.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        domain: {{ domain | json }}
        node: {{ node | json }}
    - require:
      - file: tftpd-tree-file-directory
{%- endfor %}

# Configurations of nodes that left the inventory (or changed MAC) go away.
tftpd-pxelinux-cfg-file-directory:
  file.directory:
    - name: {{ cfg_dir }}
    - user: root
    - group: root
    - mode: '0755'
    - clean: True
    - require:
      - file: tftpd-pxelinux-cfg-default-file-managed
{%- for node in nodes %}
      - file: tftpd-pxelinux-cfg-{{ node.name }}-file-managed
{%- endfor %}

tftpd-defaults-file-managed:
  file.managed:
    - name: {{ tftpd.defaults_file }}
    - source: salt://tftpd/files/tftpd-hpa.default.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        tftpd: {{ tftpd | json }}
    - require:
      - pkg: tftpd-pkg-installed

tftpd-unit-file-managed:
  file.managed:
    - name: {{ tftpd.unit_file }}
    - source: salt://tftpd/files/tftpd-hpa.service.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        tftpd: {{ tftpd | json }}

tftpd-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: tftpd-unit-file-managed

tftpd-service-running:
  service.running:
    - name: {{ tftpd.service }}
    - enable: True
    - require:
      - cmd: tftpd-systemd-daemon-reload-cmd-run
      - file: tftpd-pxelinux-cfg-file-directory
      - file: tftpd-readme-file-managed
{%- for file in tftpd.loader_files | sort %}
      - file: tftpd-loader-{{ file | replace('.', '-') }}-file-managed
{%- endfor %}
    - watch:
      - pkg: tftpd-pkg-installed
      - file: tftpd-defaults-file-managed
      - file: tftpd-unit-file-managed

{#- distcc client: the compiler toolchain and /etc/distcc/hosts, the compute nodes from the
    inventory (distcc.hosts, from the node pillar): a compute node added to the inventory is in
    every node's list after the next highstate. Applied on the compute nodes and the deployer. #}
{%- from 'distcc/map.jinja' import distcc with context %}

distcc-client-pkg-installed:
  pkg.installed:
    - pkgs: {{ distcc.pkgs | json }}

distcc-client-hosts-file-managed:
  file.managed:
    - name: {{ distcc.hosts_file }}
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - source: salt://distcc/files/hosts.jinja
    - template: jinja
    - context:
        hosts: {{ distcc.hosts | json }}
    - require:
      - pkg: distcc-client-pkg-installed

{#- Every node: its name, /etc/hosts from the inventory, and a description of the node. #}
{%- from 'common/map.jinja' import common with context %}
{%- set node = common.node %}
{%- from 'roles/map.jinja' import roles with context %}
{%- if roles.every_node %}
include: {{ roles.every_node | json }}
{%- endif %}

common-cluster-dir-file-directory:
  file.directory:
    - name: {{ common.cluster_dir }}
    - makedirs: True
    - mode: '0755'

common-node-file-managed:
  file.managed:
    - name: {{ common.cluster_dir }}/node.yaml
    - mode: '0644'
    - contents: |
        # managed by Salt from the cluster inventory
        {{ {'node': node} | yaml(False) | indent(8) }}
    - require:
      - file: common-cluster-dir-file-directory

common-hostname-file-managed:
  file.managed:
    - name: {{ common.hostname_file }}
    - makedirs: True
    - mode: '0644'
    - contents: {{ node.name }}

common-hostname-cmd-run:
  cmd.run:
    - name: hostname {{ node.name }}
    - unless: test "$(hostname)" = {{ node.name }}
    - require:
      - file: common-hostname-file-managed

common-hosts-file-managed:
  file.managed:
    - name: {{ common.hosts_file }}
    - makedirs: True
    - mode: '0644'
    - source: salt://common/files/hosts.jinja
    - template: jinja
    - context:
        node: {{ node | json }}
        entries: {{ common.hosts | json }}
        vip: {{ common.vip | json }}
        domain: {{ common.domain | json }}

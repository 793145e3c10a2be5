{#- On the k3s server: the Node objects that keep re-flashed compute nodes from joining
    ("Node password rejected") are deleted; nothing else changes. Applied by the
    orchestration k3s.orch (which passes pillar k3s_rejoin: {node: machine-id}, from the
    master's grains cache) to the compute nodes; it acts on the server only. #}
{%- from 'k3s/map.jinja' import k3s with context %}
{%- set rejoin = k3s.rejoin %}
{%- if k3s.node.mode == 'server' and rejoin %}
{%-   for name, machine_id in rejoin | dictsort %}

k3s-rejoin-{{ name }}-k3s-joined:
  k3s.joined:
    - name: {{ name }}
    - machine_id: {{ machine_id | json }}
    - wait: False
{%-   endfor %}
{%- else %}

k3s-rejoin-test-nop:
  test.nop:
    - name: k3s rejoin runs on the k3s server only
{%- endif %}

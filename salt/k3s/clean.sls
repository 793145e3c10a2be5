{#- k3s removed from a node that is no longer a compute node (salt/lib/clean.jinja): the server
    and agent units stopped and disabled, the units, the binary and its links, the config
    directory (the join token) and the air-gap images gone. Left for the next reboot (or
    k3s-killall): pods' shims still running, CNI interfaces; and the data under /var/lib/rancher
    (mounts of running pods may hold it). The kernel command line's cgroup tokens stay. Nothing
    where k3s never was (mark: the binary or the config). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set k3s = cleandata('k3s', ['bin', 'config_file']) | load_json %}
{%- set bin_dir = k3s.bin.rsplit('/', 1)[0] %}
{%- set links = [] %}
{%- for link in k3s.links %}{% do links.append(bin_dir ~ '/' ~ link) %}{% endfor %}
{{ clean('k3s', k3s, units=['k3s', 'k3s-agent'],
         files=[k3s.unit_dir ~ '/k3s.service', k3s.unit_dir ~ '/k3s-agent.service', k3s.bin]
               + links + [k3s.config_file.rsplit('/', 1)[0]] + ([k3s.images_dir ~ '/' ~ k3s.images] if k3s.images else [])) }}

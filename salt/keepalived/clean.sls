{#- keepalived removed from a node that no longer has it (salt/lib/clean.jinja): keepalived and
    the VIP-on-lo unit stopped (its ExecStop takes the VIP off lo) and disabled, the package
    purged, its config directory (config, scripts), the tmpfiles entry, the state directory and
    the maintenance flag gone. The ARP sysctls (arp_ignore 1, arp_announce 2) stay: harmless
    anywhere, and Salt has no state that takes a sysctl.present back. #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set keepalived = cleandata('keepalived', ['paths.notify_script', 'paths.tmpfiles']) | load_json %}
{%- set paths = keepalived.paths %}
{{ clean('keepalived', keepalived, units=[keepalived.service, keepalived.vip_on_lo_unit], pkgs=keepalived.clean_pkgs,
         files=[paths.conf_dir, paths.tmpfiles, paths.state_dir, paths.maintenance_file,
                '/etc/systemd/system/' ~ keepalived.vip_on_lo_unit]) }}

{#- bind removed from a node that no longer has it (salt/lib/clean.jinja): named stopped and
    disabled, its packages purged, the TSIG key, the config, the zone files and the drop-in gone.
    Nothing where bind never was (mark: the TSIG key or the drop-in, which only bind writes). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set dropin = '/etc/systemd/system/named.service.d' %}
{%- set bind = cleandata('bind', ['paths.tsig_key', dropin ~ '/time-sync.conf']) | load_json %}
{{ clean('bind', bind, units=[bind.service], pkgs=bind.clean_pkgs,
         files=[bind.paths.tsig_key, bind.paths.config, bind.paths.zone_dir, dropin]) }}

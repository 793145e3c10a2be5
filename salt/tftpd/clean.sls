{#- tftpd removed from a node that no longer has it (salt/lib/clean.jinja): tftpd-hpa stopped and
    disabled, its packages purged, the boot tree, the defaults and the unit gone. Nothing where
    tftpd never was (mark: the unit or the tree's README, which only tftpd writes). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set tftpd = cleandata('tftpd', ['unit_file', 'tree/README.txt']) | load_json %}
{{ clean('tftpd', tftpd, units=[tftpd.service], pkgs=tftpd.clean_pkgs,
         files=[tftpd.tree, tftpd.defaults_file, tftpd.unit_file]) }}

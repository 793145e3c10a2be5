{#- dhcpd removed from a node that no longer has it (salt/lib/clean.jinja): the server stopped
    and disabled, the commit beacon gone, its OMAPI guard table deleted, the package purged, the
    OMAPI key, the config, the guard's rules, the commit hook, the defaults, the unit and its
    drop-ins gone. Nothing where dhcpd never was (mark: the OMAPI key or the unit). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set dhcpd = cleandata('dhcpd', ['omapi.key_file', 'unit_file']) | load_json %}
{%- if dhcpd.present %}

dhcpd-clean-commits-beacon-absent:
  beacon.absent:
    - name: dhcp_commits
    - save: True

dhcpd-clean-omapi-guard-table-cmd-run:
  cmd.run:
    - name: nft delete table inet {{ dhcpd.omapi.nft_table }}
    - onlyif: nft list table inet {{ dhcpd.omapi.nft_table }}
{%- endif %}
{{ clean('dhcpd', dhcpd, units=[dhcpd.service], pkgs=dhcpd.clean_pkgs,
         files=[dhcpd.omapi.key_file, dhcpd.config, dhcpd.omapi.nft_file, dhcpd.defaults_file, dhcpd.unit_file,
                dhcpd.unit_file ~ '.d'] + ([dhcpd.commit_hook] if dhcpd.commit_hook else [])) }}

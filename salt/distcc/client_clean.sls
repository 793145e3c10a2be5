{#- The distcc client (distcc/client.sls) removed from a node that has neither distcc nor
    distcc.client (salt/lib/clean.jinja): the distcc package purged (the compiler and headers
    stay, distcc:clean_pkgs), the host list gone. Nothing where the client never was (mark: the
    host list). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set distcc = cleandata('distcc', ['hosts_file']) | load_json %}
{{ clean('distcc-client', distcc, pkgs=distcc.clean_pkgs, files=[distcc.hosts_file]) }}

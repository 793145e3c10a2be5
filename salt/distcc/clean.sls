{#- The distcc server (distcc/init.sls) removed from a node that is no longer a compute node
    (salt/lib/clean.jinja): distccd stopped and disabled, its defaults and drop-in gone. The
    client's part (the package, the host list) is distcc.client_clean's: the deployer keeps it.
    Nothing where the server never was (mark: the drop-in, which only the server writes). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set distcc = cleandata('distcc', ['dropin']) | load_json %}
{{ clean('distcc', distcc, units=[distcc.service],
         files=[distcc.defaults_file, distcc.dropin.rsplit('/', 1)[0]]) }}

{#- statusfeed removed from a node that is no longer the deployer (salt/lib/clean.jinja): the feed
    stopped and disabled, its unit and the status directory gone. Nothing where it never was
    (mark: the unit). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set statusfeed = cleandata('statusfeed', ['unit_file']) | load_json %}
{{ clean('statusfeed', statusfeed, units=[statusfeed.service], files=[statusfeed.unit_file, statusfeed.dir]) }}

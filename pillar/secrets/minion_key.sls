#!jinja|yaml|gpg
{#- The node's own Salt key pair, pre-seeded by the bootstrap (top.sls targets it by the one
    minion ID it belongs to), from its sealed copies. A rebuilt node gets the same key back. #}
{%- from 'secrets/read.jinja' import sealed_file, secret with context %}
{%- if sealed_file('minion-keys/' ~ opts['id'] ~ '.pem') %}
minion_key:
  pem: {{ secret('minion-keys/' ~ opts['id'] ~ '.pem') }}
  pub: {{ secret('minion-keys/' ~ opts['id'] ~ '.pub') }}
{%- endif %}

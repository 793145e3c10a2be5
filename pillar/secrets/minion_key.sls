#!jinja|yaml|gpg
{#- The node's own Salt key pair, pre-seeded by the bootstrap, from its sealed copies: the key of
    the minion this pillar is rendered for (opts['id']), never another's (top.sls gives this file
    to every inventory node). A rebuilt node gets the same key back. #}
{%- from 'secrets/read.jinja' import sealed_file, secret with context %}
{%- if sealed_file('minion-keys/' ~ opts['id'] ~ '.pem') %}
minion_key:
  pem: {{ secret('minion-keys/' ~ opts['id'] ~ '.pem') }}
  pub: {{ secret('minion-keys/' ~ opts['id'] ~ '.pub') }}
{%- endif %}

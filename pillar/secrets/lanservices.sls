#!jinja|yaml|gpg
{#- Secrets of the lanservices pair; top.sls targets this file by minion ID only. #}
{%- from 'secrets/read.jinja' import secret with context %}
secrets:
  tsig_key: {{ secret('tsig.key') }}
  omapi_key: {{ secret('omapi.key') }}
  vrrp_password: {{ secret('vrrp.password') }}

{#- Secrets of the compute nodes; top.sls targets this file by minion ID only. #}
{%- from 'secrets/read.jinja' import secret with context %}
secrets:
  k3s_token: {{ secret('k3s.token') }}

{#- The node's own Salt key pair, pre-seeded by the bootstrap (top.sls targets it by the one
    minion ID it belongs to). A rebuilt node gets the same key back. #}
{%- set dir = opts.get('cluster_secrets_dir', '/etc/salt/cluster-secrets') ~ '/minion-keys/' %}
{%- if salt['file.file_exists'](dir ~ opts['id'] ~ '.pem') %}
minion_key:
  pem: {{ salt['file.read'](dir ~ opts['id'] ~ '.pem') | json }}
  pub: {{ salt['file.read'](dir ~ opts['id'] ~ '.pub') | json }}
{%- endif %}

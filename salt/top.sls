# Roles are grains written by the bootstrap from the inventory; secrets are NOT targeted
# here but in pillar/top.sls, by minion ID (a minion controls its own grains).
base:
  '*':
    - common
{%- for role in ['deployer', 'lanservices', 'compute'] %}
  'roles:{{ role }}':
    - match: grain
    - roles.{{ role }}
{%- endfor %}

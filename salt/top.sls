{#- Roles are the `roles` grain (salt -G roles:compute targets them as well); the grain follows
    the inventory before the top is matched (roles/map.jinja). The roles and their services are
    the role table, salt/roles/defaults.yaml. Secrets are NOT targeted here but in
    pillar/top.sls, by minion ID (a minion controls its own grains). #}
{%- from 'roles/map.jinja' import roles, follow_inventory with context %}
{%- do follow_inventory() %}
base:
  '*':
    - common
{%- for role in roles.services %}
  'roles:{{ role }}':
    - match: grain
    - roles.{{ role }}
{%- endfor %}

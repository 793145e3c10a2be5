{#- Roles are the `roles` grain (salt -G roles:compute targets them as well); the grain follows
    the inventory before the top is matched (roles/map.jinja). The roles and their services are
    the role table, salt/roles/defaults.yaml. Secrets are NOT targeted here but in
    pillar/top.sls, by minion ID (a minion controls its own grains). #}
{%- from 'roles/map.jinja' import roles, follow_inventory, cleans with context %}
{%- do follow_inventory() %}
base:
  '*':
    - common
{#- then the cleans of the services this node's roles do not have (roles/map.jinja): a role
    change in the inventory removes the old role's services in the highstate that applies the
    new one #}
{%- for sls in cleans() | load_json %}
    - {{ sls }}
{%- endfor %}
{%- for role in roles.services %}
  'roles:{{ role }}':
    - match: grain
    - roles.{{ role }}
{%- endfor %}

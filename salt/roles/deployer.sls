{#- The deployer role: common, then its services (salt/roles/defaults.yaml). #}
{%- from 'roles/map.jinja' import roles with context %}
{%- from 'roles/marker.jinja' import role_marker with context %}
include: {{ (['common'] + roles.services['deployer']) | json }}

{{ role_marker('deployer') }}

{#- The lanservices role: common, then its services (salt/roles/defaults.yaml). #}
{%- from 'roles/map.jinja' import roles with context %}
{%- from 'roles/marker.jinja' import role_marker with context %}
include: {{ (['common'] + roles.services['lanservices']) | json }}

{{ role_marker('lanservices') }}

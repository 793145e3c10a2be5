{#- The compute role: the services it is made of (one folder each under salt/). #}
{%- from 'roles/marker.jinja' import role_marker with context %}
include:
  - common

{{ role_marker('compute') }}

{#- The markers of the roles this node does not have (salt/roles/marker.jinja): a node that was
    given compute and then not no longer says it ran compute's states. top.sls applies it after
    the service cleans (roles/map.jinja, cleans()). #}
{%- from 'roles/map.jinja' import roles with context %}
{%- from 'common/map.jinja' import common with context %}
{%- for role in roles.services if role not in (roles.inventory or []) %}

roles-{{ role }}-marker-file-absent:
  file.absent:
    - name: {{ common.cluster_dir }}/roles.d/{{ role }}
{%- endfor %}

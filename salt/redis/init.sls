{#- Redis for the salt-master's caches, bound to localhost, with a password. #}
{%- from 'redis/map.jinja' import redis with context %}
{%- if not redis.password %}
{{ raise('redis: no pillar secrets:redis_password for ' ~ grains['id'] ~ ': run bootstrap/generate-secrets on the deployer (the deployer gets it by minion ID)') }}
{%- endif %}

redis-pkg-installed:
  pkg.installed:
    - pkgs: {{ redis.pkgs | json }}

redis-config-bind-file-replace:
  file.replace:
    - name: {{ redis.config_file }}
    - pattern: '^bind .*$'
    - repl: 'bind {{ redis.bind }}'
    - append_if_not_found: True
    - require:
      - pkg: redis-pkg-installed

redis-config-port-file-replace:
  file.replace:
    - name: {{ redis.config_file }}
    - pattern: '^port .*$'
    - repl: 'port {{ redis.port }}'
    - append_if_not_found: True
    - require:
      - pkg: redis-pkg-installed

{#- the password: never in a diff (show_changes), readable by root and redis only #}
redis-auth-file-managed:
  file.managed:
    - name: {{ redis.auth_file }}
    - user: root
    - group: {{ redis.user }}
    - mode: '0640'
    - show_changes: False
    - contents: {{ ('# managed by Salt (salt/redis)\nrequirepass ' ~ redis.password) | json }}
    - require:
      - pkg: redis-pkg-installed

redis-config-include-file-replace:
  file.replace:
    - name: {{ redis.config_file }}
    - pattern: '^include {{ redis.auth_file }}$'
    - repl: 'include {{ redis.auth_file }}'
    - append_if_not_found: True
    - require:
      - file: redis-auth-file-managed

redis-service-running:
  service.running:
    - name: {{ redis.service }}
    - enable: True
    - watch:
      - file: redis-config-bind-file-replace
      - file: redis-config-port-file-replace
      - file: redis-auth-file-managed
      - file: redis-config-include-file-replace

{#- Redis for the salt-master's caches, bound to localhost. #}
{%- from 'redis/map.jinja' import redis with context %}

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

redis-service-running:
  service.running:
    - name: {{ redis.service }}
    - enable: True
    - watch:
      - file: redis-config-bind-file-replace
      - file: redis-config-port-file-replace

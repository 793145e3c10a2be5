{#- Redis for the salt-master's caches, bound to localhost, with a password. #}
{%- from 'redis/map.jinja' import redis with context %}
{%- if not redis.password %}
{{ raise('redis: no pillar secrets:redis_password for ' ~ redis.minion_id ~ ': run bootstrap/generate-secrets on the deployer (the deployer gets it by minion ID)') }}
{%- endif %}
{%- if redis.tls_port %}
include:
  - tls
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

{%- if redis.tls_port %}

{#- the TLS listener: the node's certificate (salt/tls), its key through systemd (below), the CA #}
redis-tls-file-managed:
  file.managed:
    - name: {{ redis.tls_file }}
    - user: root
    - group: {{ redis.user }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/redis): the TLS listener, on redis's bind addresses (the loopback)
        tls-port {{ redis.tls_port }}
        tls-cert-file {{ redis.tls.cert }}
        tls-key-file {{ redis.tls.key_path }}
        tls-ca-cert-file {{ redis.tls.ca_file }}
        tls-auth-clients {{ redis.tls_auth_clients }}
    - require:
      - pkg: redis-pkg-installed

redis-config-tls-include-file-replace:
  file.replace:
    - name: {{ redis.config_file }}
    - pattern: '^include {{ redis.tls_file }}$'
    - repl: 'include {{ redis.tls_file }}'
    - append_if_not_found: True
    - require:
      - file: redis-tls-file-managed

{#- the key stays root 0600: systemd copies it for the service alone at each start #}
redis-tls-key-credential-dropin-file-managed:
  file.managed:
    - name: {{ redis.tls_dropin }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/redis): the node's TLS key (root 0600) for redis only, as
        # {{ redis.tls.key_path }}
        [Service]
        LoadCredential={{ redis.tls_key_credential }}:{{ redis.tls.key }}

redis-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: redis-tls-key-credential-dropin-file-managed
{%- endif %}

redis-service-running:
  service.running:
    - name: {{ redis.service }}
    - enable: True
{%- if redis.tls_port %}
    - require:
      - cmd: redis-systemd-daemon-reload-cmd-run
      - cmd: tls-ca-trust-update-cmd-run
{%- endif %}
    - watch:
      - file: redis-config-bind-file-replace
      - file: redis-config-port-file-replace
      - file: redis-auth-file-managed
      - file: redis-config-include-file-replace
{%- if redis.tls_port %}
      - file: redis-tls-file-managed
      - file: redis-config-tls-include-file-replace
      - file: redis-tls-key-credential-dropin-file-managed
      {#- a new or renewed certificate (or a new key) is read at start #}
      - x509: tls-certificate-x509-certificate-managed
      - x509: tls-private-key-x509-private-key-managed
      - file: tls-ca-trust-file-managed
{%- endif %}

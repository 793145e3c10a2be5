{#- The salt-master removed from a node that is no longer the deployer (salt/lib/clean.jinja):
    salt-master and its Redis stopped and disabled, Redis purged (the job and data caches), the
    master's unit and the Redis passwords and TLS settings gone. Kept: the master's key pair
    (/etc/salt/pki/master: every minion pins its fingerprint) and /opt/salt (the minion runs
    from it). Refused on the inventory's deployer: the cluster would lose its master (the role
    table never includes it there, roles/map.jinja; this guards a hand-typed state.apply). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- from 'roles/map.jinja' import roles with context %}
{%- if 'deployer' in (roles.inventory or []) %}

master-clean-refused-test-fail-without-changes:
  test.fail_without_changes:
    - name: master.clean
    - comment: this node is the inventory's deployer; its salt-master is never removed by a state
{%- else %}
{%-   set master = cleandata('master', ['unit_file']) | load_json %}
{%-   set redis = cleandata('redis', ['auth_file']) | load_json %}
{%-   do redis.update({'present': master.present or redis.present}) %}
{{ clean('master', master, units=[master.service], files=[master.unit_file, master.redis_auth_file]) }}
{{ clean('redis', redis, units=[redis.service], pkgs=redis.pkgs,
         files=[redis.auth_file, redis.tls_file, redis.tls_dropin.rsplit('/', 1)[0]]) }}
{%- endif %}

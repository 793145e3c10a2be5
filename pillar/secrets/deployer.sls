#!jinja|yaml|gpg
{#- Secrets of the deployer; top.sls targets this file by minion ID only. #}
{%- from 'secrets/read.jinja' import secret with context %}
secrets:
  # Redis's requirepass: redis.conf and the master's job/data cache clients (salt/redis, salt/master)
  redis_password: {{ secret('redis.password') }}

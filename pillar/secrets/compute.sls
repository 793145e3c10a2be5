#!jinja|yaml|gpg
{#- Secrets of the compute nodes; top.sls targets this file by minion ID only. #}
{%- from 'secrets/read.jinja' import secret with context %}
secrets:
  k3s_token: {{ secret('k3s.token') }}
  # the MPI user's key pair: made on the deployer, handed to compute nodes only
  mpi_ssh_key: {{ secret('mpi_ed25519') }}
  mpi_ssh_pub: {{ secret('mpi_ed25519.pub') }}

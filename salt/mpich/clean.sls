{#- MPICH removed from a node that is no longer a compute node (salt/lib/clean.jinja): the compute
    user no longer lingers, MPICH purged (openssh-client stays, mpich:clean_pkgs), the host file,
    Hydra's config, the sources and the programs built here gone, then the compute user with its
    home (the cluster's MPI key). Nothing where MPICH never was (mark: the host file or Hydra's
    config). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set mpich = cleandata('mpich', ['hostfile', 'hydra_conf']) | load_json %}
{%- if mpich.present %}

mpich-clean-user-linger-cmd-run:
  cmd.run:
    - name: loginctl disable-linger {{ mpich.user }}
    - onlyif:
      - fun: file.file_exists
        path: {{ mpich.linger_dir }}/{{ mpich.user }}
    - require_in:
      - user: mpich-clean-{{ mpich.user }}-user-absent
{%- endif %}
{{ clean('mpich', mpich, pkgs=mpich.clean_pkgs, users=[mpich.user],
         files=[mpich.hostfile, mpich.hydra_conf, mpich.src_dir, mpich.bin_dir ~ '/cluster-mpi-hello',
                mpich.lib_dir ~ '/libcluster-mpi-finalize.so']) }}

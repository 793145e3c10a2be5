{#- MPICH on a compute node: mpich + mpicc, the compute user with the cluster's MPI key pair
    (pillar, made on the deployer), non-interactive ssh between the compute nodes for
    mpiexec, /etc/mpich/hosts from the inventory, and cluster-mpi-hello built here with mpicc. #}
{%- from 'mpich/map.jinja' import mpich with context %}
{%- if 'mpi_ssh_key' not in pillar.get('secrets', {}) %}
{{ raise('mpich: no pillar secrets:mpi_ssh_key for ' ~ grains['id'] ~ ': run bootstrap/generate-secrets on the deployer (compute nodes get it by minion ID)') }}
{%- endif %}
{%- set secrets = pillar['secrets'] %}
{%- set compute = salt['cluster.nodes']('compute') %}
{%- set peers = [] %}
{%- for name in compute %}
{%-   set peer = salt['cluster.node'](name) %}
{%-   do peers.extend([peer.name, peer.fqdn, peer.ip]) %}
{%- endfor %}
{%- set ssh_dir = mpich.home ~ '/.ssh' %}
{%- set src = mpich.src_dir ~ '/cluster-mpi-hello.c' %}
{%- set built_from = mpich.src_dir ~ '/built-from.c' %}
{%- set binary = mpich.bin_dir ~ '/cluster-mpi-hello' %}

mpich-pkg-installed:
  pkg.installed:
    - pkgs: {{ mpich.pkgs | json }}

mpich-user-user-present:
  user.present:
    - name: {{ mpich.user }}
    - home: {{ mpich.home }}
    - createhome: True
    - shell: {{ mpich.shell }}
    - optional_groups: {{ mpich.groups | json }}

mpich-user-ssh-dir-file-directory:
  file.directory:
    - name: {{ ssh_dir }}
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0700'
    - require:
      - user: mpich-user-user-present

mpich-user-ssh-key-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/id_ed25519
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0600'
    - show_changes: False
    - contents: {{ secrets['mpi_ssh_key'] | json }}
    - require:
      - file: mpich-user-ssh-dir-file-directory

mpich-user-ssh-pub-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/id_ed25519.pub
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0644'
    - contents: {{ secrets['mpi_ssh_pub'] | json }}
    - require:
      - file: mpich-user-ssh-dir-file-directory

{#- exactly the cluster's MPI key: the compute nodes log in to each other with it, nothing else #}
mpich-user-authorized-keys-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/authorized_keys
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0600'
    - contents: {{ secrets['mpi_ssh_pub'] | json }}
    - require:
      - file: mpich-user-ssh-dir-file-directory

{#- mpiexec's ssh must never prompt: batch mode, the cluster key, and host keys trusted only
    through the cluster SSH CA (the @cert-authority line of /etc/ssh/ssh_known_hosts, sls sshd):
    no per-user known_hosts, so a re-flashed compute node is trusted again once its highstate
    got it a new host certificate, with nothing to edit; anything else is refused #}
mpich-user-ssh-config-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/config
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0600'
    - contents: |
        # managed by Salt (salt/mpich): mpiexec's ssh between the compute nodes
        Host {{ peers | join(' ') }}
            User {{ mpich.user }}
            IdentityFile ~/.ssh/id_ed25519
            IdentitiesOnly yes
            BatchMode yes
            StrictHostKeyChecking yes
            UserKnownHostsFile /dev/null
            GlobalKnownHostsFile /etc/ssh/ssh_known_hosts
            ConnectTimeout 10
    - require:
      - file: mpich-user-ssh-dir-file-directory

{#- host keys learnt by the former accept-new: stale after a re-flash, and no longer read #}
mpich-user-known-hosts-file-absent:
  file.absent:
    - name: {{ ssh_dir }}/known_hosts

mpich-hostfile-file-managed:
  file.managed:
    - name: {{ mpich.hostfile }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/mpich) from the cluster inventory: the compute nodes, by IP
        {%- for line in salt['cluster.mpi_hostfile'](slots=mpich.slots) %}
        {{ line }}
        {%- endfor %}

mpich-profile-file-managed:
  file.managed:
    - name: {{ mpich.profile_file }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/mpich): libfabric provider for MPICH across the compute nodes
        export FI_PROVIDER={{ mpich.fi_provider }}

mpich-hello-source-file-managed:
  file.managed:
    - name: {{ src }}
    - makedirs: True
    - mode: '0644'
    - source: salt://mpich/files/cluster-mpi-hello.c

{#- built when the binary is missing or was built from another source (a failed build is
    retried on the next run); built-from.c records the source of the installed binary #}
mpich-hello-build-cmd-run:
  cmd.run:
    - name: >-
        mpicc -O2 -Wall -o {{ binary }}.new {{ src }}
        && install -m 0755 {{ binary }}.new {{ binary }}
        && rm -f {{ binary }}.new
        && cp {{ src }} {{ built_from }}
    - unless: test -x {{ binary }} && cmp -s {{ src }} {{ built_from }}
    - require:
      - pkg: mpich-pkg-installed
      - file: mpich-hello-source-file-managed

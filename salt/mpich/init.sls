{#- MPICH on a compute node: mpich + mpicc, the compute user with the cluster's MPI key pair
    (pillar, made on the deployer), non-interactive ssh between the compute nodes for
    mpiexec, /etc/mpich/hosts from the inventory, cluster-mpi-hello built here with mpicc, and
    the MPI_Finalize fix that mpiexec preloads into every rank. #}
{%- from 'mpich/map.jinja' import mpich with context %}
{%- if not mpich.ssh_key.in_pillar %}
{{ raise('mpich: no pillar secrets:mpi_ssh_key for ' ~ mpich.node.name ~ ': run bootstrap/generate-secrets on the deployer (compute nodes get it by minion ID)') }}
{%- endif %}
{%- set peers = mpich.peers %}
{%- set ssh_dir = mpich.home ~ '/.ssh' %}
{#- the programs built here with mpicc: the sample job, and the MPI_Finalize fix #}
{%- set builds = {
      'hello': {'source': 'cluster-mpi-hello.c', 'target': mpich.bin_dir ~ '/cluster-mpi-hello',
                'flags': '-O2 -Wall', 'mode': '0755'},
      'finalize': {'source': 'cluster-mpi-finalize.c',
                   'target': mpich.lib_dir ~ '/libcluster-mpi-finalize.so',
                   'flags': '-O2 -Wall -shared -fPIC', 'mode': '0644'},
    } %}

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

{#- the compute user lingers: with logind's RemoveIPC (on in Debian), the end of the user's last
    session (the ssh sessions mpiexec opens on each node) removes every shared-memory file it owns,
    those of ranks a new job has just started too; UCX then fails in MPI_Init ("shm_unlink ...
    No such file", seen on the lab). A lingering user is never finalised, so never cleaned. #}
mpich-user-linger-cmd-run:
  cmd.run:
    - name: loginctl enable-linger {{ mpich.user }}
    - creates: {{ mpich.linger_dir }}/{{ mpich.user }}
    - require:
      - user: mpich-user-user-present

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
    - contents_pillar: secrets:mpi_ssh_key
    - require:
      - file: mpich-user-ssh-dir-file-directory

mpich-user-ssh-pub-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/id_ed25519.pub
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0644'
    - contents: {{ mpich.ssh_key.pub | json }}
    - require:
      - file: mpich-user-ssh-dir-file-directory

{#- exactly the cluster's MPI key: the compute nodes log in to each other with it, nothing else #}
mpich-user-authorized-keys-file-managed:
  file.managed:
    - name: {{ ssh_dir }}/authorized_keys
    - user: {{ mpich.user }}
    - group: {{ mpich.user }}
    - mode: '0600'
    - contents: {{ mpich.ssh_key.pub | json }}
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
        {%- for line in mpich.hosts %}
        {{ line }}
        {%- endfor %}

{#- built when the target is missing or was built from another source (a failed build is
    retried on the next run); <source>.built records the source of the installed target #}
{%- for name, build in builds.items() %}
{%-   set src = mpich.src_dir ~ '/' ~ build.source %}

mpich-{{ name }}-source-file-managed:
  file.managed:
    - name: {{ src }}
    - makedirs: True
    - mode: '0644'
    - source: salt://mpich/files/{{ build.source }}

mpich-{{ name }}-build-cmd-run:
  cmd.run:
    - name: >-
        mkdir -p {{ build.target.rsplit('/', 1)[0] }}
        && mpicc {{ build.flags }} -o {{ build.target }}.new {{ src }}
        && install -m {{ build.mode }} {{ build.target }}.new {{ build.target }}
        && rm -f {{ build.target }}.new
        && cp {{ src }} {{ src }}.built
    - unless: test -f {{ build.target }} && cmp -s {{ src }} {{ src }}.built
    - require:
      - pkg: mpich-pkg-installed
      - file: mpich-{{ name }}-source-file-managed
{%- endfor %}

{#- every rank mpiexec starts gets the MPI_Finalize fix; one line of options (Hydra reads a
    second line as a second program) #}
mpich-hydra-conf-file-managed:
  file.managed:
    - name: {{ mpich.hydra_conf }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/mpich): see {{ mpich.src_dir }}/cluster-mpi-finalize.c
        -genv LD_PRELOAD {{ builds.finalize.target }}
    - require:
      - cmd: mpich-finalize-build-cmd-run

{%- for path in mpich.obsolete_files %}

mpich-obsolete-{{ loop.index }}-file-absent:
  file.absent:
    - name: {{ path }}
{%- endfor %}

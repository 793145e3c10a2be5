{#- salt-minion: pinned Salt in a venv, configuration from the inventory (id; the roles grain),
    the master pinned by fingerprint, the node's pre-seeded key (the master already accepted
    it: the minion connects at once, nothing to accept). #}
{%- from 'minion/map.jinja' import minion with context %}
{%- set me = minion.node %}

minion-venv-pkg-installed:
  pkg.installed:
    - pkgs: {{ minion.pkgs | json }}

minion-venv-cmd-run:
  cmd.run:
    - name: python3 -m venv {{ minion.venv }}
    - creates: {{ minion.venv }}/bin/python
    - require:
      - pkg: minion-venv-pkg-installed

{#- the locks first: every distribution pinned by sha256 (bootstrap/lock-salt-wheels). Salt is an
    sdist (PyPI has no Salt wheel): pip builds it here from the locked build backend only
    (--no-build-isolation), so nothing unhashed is ever installed, from the cache or the index #}
minion-salt-locks-file-managed:
  file.managed:
    - names:
      - {{ minion.lock_dir }}/build.txt:
        - source: salt://minion/files/locks/build.txt
      - {{ minion.lock_dir }}/salt.txt:
        - source: salt://minion/files/locks/salt.txt
    - makedirs: True
    - mode: '0644'

{%- set pip = minion.venv ~ '/bin/pip install -q --disable-pip-version-check --no-deps --require-hashes ' ~ minion.pip_source %}

minion-salt-pip-cmd-run:
  cmd.run:
    - name: >-
        {{ pip }} -r {{ minion.lock_dir }}/build.txt &&
        {{ pip }} --no-build-isolation -r {{ minion.lock_dir }}/salt.txt
    - unless: {{ minion.venv }}/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('salt') != '{{ minion.salt_version }}')"
    - require:
      - cmd: minion-venv-cmd-run
      - file: minion-salt-locks-file-managed

minion-config-file-managed:
  file.managed:
    - name: {{ minion.config_file }}
    - makedirs: True
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/minion) from the cluster inventory
        master: {{ minion.master }}
        id: {{ me.name }}
        master_finger: '{{ minion.master_finger }}'
        # the start event carries the provisioned marker: the reactor tells a plain restart
        # (refresh only) from a re-flashed card (rebuild) without asking the minion
        start_event_grains: [cluster_provisioned]
{%- for option, value in minion.loader | dictsort %}
        {{ option }}: {{ value | json }}
{%- endfor %}

{#- The roles grain, in the grains file beside the grains the cluster runner sets
    (cluster_provisioned: merged, never replaced; written in the format grains.setval writes, so
    neither rewrites the other's). Not in the minion's configuration: a role change needs no
    restart, the running minion re-reads its grains at once. A file, not grains.present: under
    salt-ssh (the bootstrap) grains.present writes salt-ssh's own grains file, not the node's. #}
minion-roles-grain-file-serialize:
  file.serialize:
    - name: {{ minion.grains_file }}
    - dataset:
        roles: {{ me.roles | json }}
    - serializer: yaml
    - serializer_opts:
      - default_flow_style: False
    - merge_if_exists: True
    - makedirs: True
    - mode: '0644'

{#- The running minion re-reads its grains, then sends them with a pillar request, which is when
    the master's cache (what `salt -G` expects answers from) learns them: refresh_pillar reloads
    the grains first, and wait=True returns once that pillar came back, so the master targets the
    node by its new roles when this highstate returns (saltutil.refresh_grains fires the same
    refresh without waiting). #}
minion-grains-refresh-cmd-run:
  cmd.run:
    - name: {{ minion.venv }}/bin/salt-call --local -l quiet saltutil.refresh_pillar wait=True timeout=60
    - onlyif: systemctl is-active --quiet {{ minion.service }}
    - onchanges:
      - file: minion-roles-grain-file-serialize

minion-pki-dir-file-directory:
  file.directory:
    - name: {{ minion.pki_dir }}
    - makedirs: True
    - mode: '0700'

{%- if minion.preseeded_key %}

minion-key-pem-file-managed:
  file.managed:
    - name: {{ minion.pki_dir }}/minion.pem
    - contents_pillar: minion_key:pem
    - mode: '0400'
    - show_changes: False
    - require:
      - file: minion-pki-dir-file-directory

minion-key-pub-file-managed:
  file.managed:
    - name: {{ minion.pki_dir }}/minion.pub
    - contents_pillar: minion_key:pub
    - mode: '0644'
    - require:
      - file: minion-pki-dir-file-directory
{%- endif %}

minion-unit-file-managed:
  file.managed:
    - name: {{ minion.unit_file }}
    - source: salt://minion/files/salt-minion.service
    - template: jinja
    - context:
        minion: {{ minion | json }}

{#- A running minion whose configuration, unit or key changed is restarted only once this run
    has ended: a restart in the middle of a highstate ends the job with it (on a role change it
    stopped an apt install half way). The restart waits in a transient unit for this run's
    process (the parent of this shell: the job, or salt-call under salt-ssh) to exit. A minion
    that is not running yet (the bootstrap) is simply started below. #}
minion-restart-after-this-run-cmd-run:
  cmd.run:
    - name: >-
        systemd-run --quiet --collect --unit={{ minion.service }}-restart-$$ /bin/sh -c
        'while kill -0 '"$PPID"' 2>/dev/null; do sleep 1; done;
        systemctl daemon-reload; systemctl restart {{ minion.service }}'
    - onlyif: systemctl is-active --quiet {{ minion.service }}
    - onchanges:
      - file: minion-unit-file-managed
      - file: minion-config-file-managed
{%- if minion.preseeded_key %}
      - file: minion-key-pem-file-managed
      - file: minion-key-pub-file-managed
{%- endif %}

minion-service-running:
  service.running:
    - name: {{ minion.service }}
    - enable: True
    - require:
      - cmd: minion-salt-pip-cmd-run
      - cmd: minion-restart-after-this-run-cmd-run

{#- k3s on a compute node, air-gapped: the pinned binary from the deployer's fileserver
    (sha256 from pillar, version checked), the server on one compute node and agents joining
    it over https with the pre-shared token, then the node must be Ready (k3s.joined).
    Without the artifact, ONE notification state says why k3s was skipped. #}
{%- from 'k3s/map.jinja' import k3s, k3s_secrets with context %}
{%- set artifact = k3s.artifact_path %}
{%- set on_fileserver = k3s.on_fileserver %}
{%- if not (k3s.sha256 and on_fileserver) %}
{%-   set missing = [] %}
{%-   if not on_fileserver %}{% do missing.append('the file is not on the fileserver') %}{% endif %}
{%-   if not k3s.sha256 %}{% do missing.append('no sha256 is set') %}{% endif %}

k3s-skipped-test-show-notification:
  test.show_notification:
    - text: {{ ('k3s skipped: no artifact at salt://' ~ artifact ~ ' with sha256 in pillar k3s:lookup:sha256 ('
               ~ missing | join(', ') ~ '); put the k3s ' ~ k3s.version ~ ' binary there and its sha256 in pillar') | json }}
{%- else %}
{%-   set node = k3s.node %}
{%-   if 'token' not in k3s_secrets %}
{{ raise('k3s: no pillar secrets:k3s_token for ' ~ node.name ~ ': run bootstrap/generate-secrets on the deployer (compute nodes get it by minion ID)') }}
{%-   endif %}
{%-   set mode = node.mode %}
{%-   set unit = 'k3s' if mode == 'server' else 'k3s-agent' %}
{%-   set ifaces = node.interfaces %}
{%-   set cmdline = [k3s.cmdline_file] if k3s.cmdline_file else [] %}
{#-   on a Pi whose cmdline.txt was just changed, k3s waits for the reboot (no memory cgroup yet) #}
{%-   set memory_cgroup = "grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null || awk '$1 == \"memory\" && $4 == 1 {found = 1} END {exit !found}' /proc/cgroups" %}
{%-   if not ifaces %}

k3s-node-ip-test-fail-without-changes:
  test.fail_without_changes:
    - name: {{ ('k3s: the inventory address ' ~ node.ip ~ ' of ' ~ node.name ~ ' is on no interface of this machine (ip4_interfaces: '
               ~ node.ip4_interfaces | json ~ ')') | json }}
    - require_in:
      - file: k3s-config-file-managed
{%-   endif %}
{%-   if cmdline %}

k3s-cmdline-k3s-cmdline:
  k3s.cmdline:
    - name: {{ cmdline[0] }}
    - tokens: {{ k3s.cmdline_tokens | json }}
{%-     if k3s.reboot %}

k3s-cmdline-reboot-cmd-run:
  cmd.run:
    - name: {{ ('shutdown -r +1 "salt: kernel command line changed for k3s (' ~ k3s.cmdline_tokens | join(' ') ~ ')"') | json }}
    - onchanges:
      - k3s: k3s-cmdline-k3s-cmdline
{%-     endif %}
{%-   endif %}

k3s-binary-file-managed:
  file.managed:
    - name: {{ k3s.bin }}
    - source: salt://{{ artifact }}
    - mode: '0755'
    - show_changes: False
    # file.managed ignores source_hash for salt:// sources (it trusts the master's hash), so
    # the new file is checked here, on the node, before it replaces the old one: the admin's
    # sha256 from pillar, then the pinned release
    - check_cmd: /bin/sh -c 'echo "{{ k3s.sha256 }}  $1" | sha256sum -c --status - && chmod 0700 "$1" && "$1" --version | grep -qF "k3s version {{ k3s.version }} "' k3s-artifact-check

{%-   for link in k3s.links %}

k3s-link-{{ link }}-file-symlink:
  file.symlink:
    - name: {{ k3s.bin_dir ~ '/' ~ link }}
    - target: {{ k3s.bin }}
    - require:
      - file: k3s-binary-file-managed
{%-   endfor %}
{%-   if k3s.images %}

k3s-images-file-managed:
  file.managed:
    - name: {{ k3s.images_dir }}/{{ k3s.images }}
    - source: salt://k3s/files/artifacts/{{ k3s.images }}
    - check_cmd: /bin/sh -c 'echo "{{ k3s.images_sha256 }}  $1" | sha256sum -c --status -' k3s-images-check
    - makedirs: True
    - mode: '0644'
    - show_changes: False
    - require_in:
      - service: k3s-service-running
{%-   endif %}

{#- the join arguments (token included): root only, and never shown in a diff #}
k3s-config-file-managed:
  file.managed:
    - name: {{ k3s.config_file }}
    - makedirs: True
    - mode: '0600'
    - show_changes: False
    - contents: {{ ('# managed by Salt (salt/k3s): k3s ' ~ mode ~ ' ' ~ node.name ~ '\n'
                    ~ k3s_secrets.join_args | yaml(False)) | json }}

k3s-unit-file-managed:
  file.managed:
    - name: {{ k3s.unit_dir }}/{{ unit }}.service
    - mode: '0644'
    - source: salt://k3s/files/k3s.service.jinja
    - template: jinja
    - context:
        k3s: {{ k3s | json }}
        mode: {{ mode }}

k3s-systemd-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: k3s-unit-file-managed

k3s-service-running:
  service.running:
    - name: {{ unit }}
    - enable: True
{%-   if cmdline %}
    - onlyif: {{ memory_cgroup | json }}
{%-   endif %}
    - require:
      - cmd: k3s-systemd-reload-cmd-run
{%-   for link in k3s.links %}
      - file: k3s-link-{{ link }}-file-symlink
{%-   endfor %}
    - watch:
      - file: k3s-binary-file-managed
      - file: k3s-config-file-managed
      - file: k3s-unit-file-managed

k3s-joined-k3s-joined:
  k3s.joined:
    - name: {{ node.name }}
    - machine_id: {{ node.machine_id | json }}
    - timeout: {{ k3s.join_timeout }}
{%-   if cmdline %}
    - onlyif: {{ memory_cgroup | json }}
{%-   endif %}
    - require:
      - service: k3s-service-running
{%- endif %}

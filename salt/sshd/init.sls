{#- Close password SSH, but only after the admin key login works (sls admin); trust the cluster
    SSH CA: its host certificates for every SSH client of this node (global known_hosts) and its
    user certificates for sshd (TrustedUserCAKeys, the admin's authorized_keys stay as fallback).
    Applied by the salt-ssh bootstrap and by every highstate; the node's own host certificate
    is sshd.hostcert (highstate only). #}
{%- from 'sshd/map.jinja' import sshd with context %}
include:
  - admin

sshd-pkg-installed:
  pkg.installed:
    - pkgs: {{ sshd.pkgs | json }}
{%- if sshd.ca_pub %}

{#- one line: any host of the cluster (domain wildcard, inventory names and IPs) whose host
    certificate the CA signed; no per-host key, so a re-flashed and re-certified node is the
    same node to every client #}
sshd-known-hosts-file-managed:
  file.managed:
    - name: {{ sshd.known_hosts }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/sshd): the cluster SSH CA certifies every node's host key
        @cert-authority {{ sshd.trusted | join(',') }} {{ sshd.ca_pub }}

sshd-user-ca-file-managed:
  file.managed:
    - name: {{ sshd.user_ca_file }}
    - mode: '0644'
    - contents: {{ sshd.ca_pub | json }}
    - require_in:
      - file: sshd-config-dropin-file-managed
{%- endif %}

{#- check_cmd: the new drop-in alone must pass sshd -t before it replaces the live one #}
sshd-config-dropin-file-managed:
  file.managed:
    - name: {{ sshd.dropin }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/sshd)
        {%- for key, value in sshd.settings | dictsort %}
        {{ key }} {{ value }}
        {%- endfor %}
    - check_cmd: /usr/sbin/sshd -t -f
    - require:
      - sls: admin
      - pkg: sshd-pkg-installed

sshd-config-test-cmd-run:
  cmd.run:
    - name: /usr/sbin/sshd -t
    - onchanges:
      - file: sshd-config-dropin-file-managed

sshd-service-running:
  service.running:
    - name: {{ sshd.service }}
    - enable: True
    - reload: True
    - require:
      - cmd: sshd-config-test-cmd-run
    - watch:
      - file: sshd-config-dropin-file-managed

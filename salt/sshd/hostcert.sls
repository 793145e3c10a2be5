{#- The node's host certificate from the cluster SSH CA: every SSH client of the cluster trusts
    it through one @cert-authority line (sls sshd), so a re-flashed node with new host keys is
    trusted again as soon as a highstate certified its new key. The host key never leaves the
    node: only its public half goes to the CA minion (the deployer), which signs it under the
    policy host_<id> (pillar ssh_signing_policies there: this minion only, principals pinned to
    its name, FQDN and IP). The deployer signs its own certificate locally. Highstate only: the
    salt-ssh bootstrap has no minion yet, so no remote signing. A highstate renews the
    certificate once less than host_cert_renew remains. #}
{%- from 'sshd/map.jinja' import sshd with context %}
{%- if not sshd.ca_pub %}
{{ raise('sshd.hostcert: no pillar deploy:ssh_ca_pub for ' ~ sshd.node ~ ': run bootstrap/generate-secrets on the deployer (it makes ssh/ca_ed25519)') }}
{%- endif %}
{%- if not sshd.principals %}
{{ raise('sshd.hostcert: ' ~ sshd.node ~ ' is not in the cluster inventory: no principals to certify') }}
{%- endif %}
{%- if sshd.is_ca and not sshd.ca_key %}
{{ raise('sshd.hostcert: ' ~ sshd.node ~ ' is the deployer but its pillar has no deploy:ssh_ca:key (the CA key ssh/ca_ed25519 in the secrets directory)') }}
{%- endif %}
{%- set cert_state = 'sshd-host-certificate-ssh-pki-certificate-managed' %}
include:
  - sshd

{#- the host key sshd already uses (made by the openssh-server package; recreated if missing) #}
sshd-host-key-cmd-run:
  cmd.run:
    - name: ssh-keygen -A
    - creates: {{ sshd.host_key }}
    - require:
      - pkg: sshd-pkg-installed

{{ cert_state }}:
  ssh_pki.certificate_managed:
    - name: {{ sshd.host_cert }}
    - private_key: {{ sshd.host_key }}
    - cert_type: host
    - valid_principals: {{ sshd.principals | json }}
    - ttl_remaining: {{ sshd.host_cert_renew }}
    - mode: '0644'
{%- if sshd.is_ca %}
    - signing_private_key: {{ sshd.ca_key }}
    - key_id: {{ sshd.principals[1] }}
    - ttl: {{ sshd.host_cert_ttl }}
{%- else %}
    - ca_server: {{ sshd.ca_server }}
    - signing_policy: host_{{ sshd.node }}
    - retry: {{ sshd.ca_retry | json }}
    {#- the CA is asked only when the certificate on disk is not what its policy would give: for
        this host key, from this CA, for these principals, not due for renewal (_modules/certs.py) #}
    - unless:
      - fun: certs.ssh_host_current
        certificate: {{ sshd.host_cert }}
        private_key: {{ sshd.host_key }}
        ca_pub: {{ sshd.ca_pub | json }}
        principals: {{ sshd.principals | json }}
        ttl_remaining: {{ sshd.host_cert_renew | json }}
{%- endif %}
    - require:
      - cmd: sshd-host-key-cmd-run

{#- says why, in one line, when the CA could not be asked (the state above has the details) #}
sshd-host-certificate-ca-unreachable-test-fail-without-changes:
  test.fail_without_changes:
    - name: >-
        sshd.hostcert: no host certificate for {{ sshd.node }} from the SSH CA
        {%- if sshd.is_ca %} key {{ sshd.ca_key }} (this node is the CA: is the key readable by root?)
        {%- else %} minion {{ sshd.ca_server }} after {{ sshd.ca_retry.attempts }} attempts: check that it answers
        (salt {{ sshd.ca_server }} test.ping), that the master allows peer calls to
        ssh_pki.sign_remote_certificate (master.d/peer.conf, then restart salt-master) and that
        {{ sshd.ca_server }}'s pillar has the policy (salt {{ sshd.ca_server }} pillar.item
        ssh_signing_policies:host_{{ sshd.node }}); the node keeps its old certificate, if any
        {%- endif %}
    - onfail:
      - ssh_pki: {{ cert_state }}

{#- the drop-in alone must pass sshd -t before it goes live; then the whole configuration #}
sshd-host-certificate-dropin-file-managed:
  file.managed:
    - name: {{ sshd.hostcert_dropin }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/sshd/hostcert.sls): the host key's certificate from the cluster SSH CA
        HostCertificate {{ sshd.host_cert }}
    - check_cmd: /usr/sbin/sshd -t -f
    - require:
      - ssh_pki: {{ cert_state }}

sshd-host-certificate-config-test-cmd-run:
  cmd.run:
    - name: /usr/sbin/sshd -t
    - onchanges:
      - ssh_pki: {{ cert_state }}
      - file: sshd-host-certificate-dropin-file-managed

{#- sshd reads its certificates when it (re)loads: reload on a new or renewed certificate #}
sshd-host-certificate-service-running:
  service.running:
    - name: {{ sshd.service }}
    - reload: True
    - require:
      - cmd: sshd-host-certificate-config-test-cmd-run
      - service: sshd-service-running
    - watch:
      - ssh_pki: {{ cert_state }}
      - file: sshd-host-certificate-dropin-file-managed

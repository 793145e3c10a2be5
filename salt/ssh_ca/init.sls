{#- The cluster SSH CA on the deployer: the CA key stays root-only, salt-ssh trusts the hosts the
    CA certified (the same @cert-authority line as every node's /etc/ssh/ssh_known_hosts, see
    salt/sshd), and the admin account's keys get user certificates (sshd on every node trusts
    them through TrustedUserCAKeys; authorized_keys stay as the fallback). #}
{%- from 'ssh_ca/map.jinja' import ssh_ca with context %}
{%- from 'sshd/map.jinja' import sshd with context %}
{%- if not ssh_ca.key or not sshd.ca_pub %}
{{ raise('ssh_ca: no CA key in the pillar of ' ~ ssh_ca.minion_id ~ ' (deploy:ssh_ca:key, deploy:ssh_ca_pub): run bootstrap/generate-secrets on the deployer (it makes ssh/ca_ed25519)') }}
{%- endif %}
include:
  - sshd

{#- the key was made 0600 by bootstrap/generate-secrets: keep it so (never created here) #}
ssh-ca-key-file-managed:
  file.managed:
    - name: {{ ssh_ca.key }}
    - create: False
    - replace: False
    - show_changes: False
    - user: root
    - group: root
    - mode: '0600'

ssh-ca-salt-ssh-known-hosts-file-managed:
  file.managed:
    - name: {{ ssh_ca.salt_ssh_known_hosts }}
    - replace: False
    - makedirs: True

{#- one CA line, kept up to date; the host keys salt-ssh learnt on first contact stay #}
ssh-ca-salt-ssh-known-hosts-ca-line-file-replace:
  file.replace:
    - name: {{ ssh_ca.salt_ssh_known_hosts }}
    - pattern: '^@cert-authority .*$'
    - repl: {{ ('@cert-authority ' ~ sshd.trusted | join(',') ~ ' ' ~ sshd.ca_pub) | json }}
    - append_if_not_found: True
    - backup: False
    - require:
      - file: ssh-ca-salt-ssh-known-hosts-file-managed
{%- for pub, cert in ssh_ca.user_certs | dictsort %}
{%-   set name = (pub.split('/') | last)[:-4] %}

ssh-ca-user-certificate-{{ name }}-ssh-pki-certificate-managed:
  ssh_pki.certificate_managed:
    - name: {{ cert }}
    - public_key: {{ pub }}
    - signing_private_key: {{ ssh_ca.key }}
    - cert_type: user
    - valid_principals: {{ [ssh_ca.admin_user] | json }}
    - key_id: {{ (ssh_ca.admin_user ~ ':' ~ name) | json }}
    - ttl: {{ ssh_ca.user_cert.ttl }}
    - ttl_remaining: {{ ssh_ca.user_cert.renew }}
    - extensions: {{ ssh_ca.user_cert.extensions | json }}
    - mode: '0644'
    - makedirs: True
    - dir_mode: '0700'
    - require:
      - file: ssh-ca-key-file-managed
{%- endfor %}

{#- The node's TLS identity: its own private key (made here, root 0600, never copied anywhere),
    a certificate from the cluster TLS CA for the node's name, FQDN and IP (the CA's policy
    tls_<id> pins them, whatever the request says), renewed by the highstate once fewer than
    tls:days_remaining days are left, and the CA certificate in the system trust store. The
    deployer is the CA: it signs its own certificate locally under the same policy. #}
{%- from 'tls/map.jinja' import tls with context %}
{%- if not tls.in_inventory %}
{{ raise('tls: ' ~ tls.node ~ ' is not in the cluster inventory: no signing policy for it') }}
{%- endif %}
{%- if tls.is_ca and not tls.ca_cert_file %}
{{ raise('tls: ' ~ tls.node ~ ' is the deployer but its pillar has no deploy:tls_ca (pillar/cluster/init.sls)') }}
{%- endif %}
{%- set cert_state = 'tls-certificate-x509-certificate-managed' %}
{%- if tls.is_ca %}
include:
  - tls_ca
{%- endif %}

tls-pkg-installed:
  pkg.installed:
    - pkgs: {{ tls.pkgs | json }}

{%- if tls.is_ca or tls.remote_signing %}

tls-dir-file-directory:
  file.directory:
    - name: {{ tls.dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

{#- made once on the node; kept root 0600; a lost key is made again (and the certificate with it) #}
tls-private-key-x509-private-key-managed:
  x509.private_key_managed:
    - name: {{ tls.key }}
    - algo: {{ tls.key_algo }}
    - keysize: {{ tls.key_size }}
    - new: False
    - user: root
    - group: root
    - mode: '0600'
    - require:
      - file: tls-dir-file-directory

{#- subject, names, usages and lifetime all come from the policy (the CA's pillar) #}
{{ cert_state }}:
  x509.certificate_managed:
    - name: {{ tls.cert }}
    - private_key: {{ tls.key }}
    - signing_policy: {{ tls.policy }}
    - days_remaining: {{ tls.days_remaining }}
    {#- what the policy sets anyway (it wins over the request): said here so Salt does not warn #}
    - days_valid: {{ tls.days_valid }}
{%- if not tls.is_ca %}
    - ca_server: {{ tls.ca_server }}
    - retry: {{ tls.ca_retry | json }}
    {#- the CA is asked only when the certificate on disk is not what its policy would give: for
        this key, from this CA, for these names, not due for renewal (_modules/certs.py) #}
    - unless:
      - fun: certs.tls_current
        certificate: {{ tls.cert }}
        private_key: {{ tls.key }}
        ca_cert: {{ tls.ca_cert | json }}
        cn: {{ tls.cn | json }}
        names: {{ tls.names | json }}
        days_remaining: {{ tls.days_remaining }}
{%- endif %}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - x509: tls-private-key-x509-private-key-managed
{%- if tls.is_ca %}
      - sls: tls_ca
{%- endif %}

{#- says why, in one line, when the CA could not be asked (the state above has the details) #}
tls-certificate-ca-unreachable-test-fail-without-changes:
  test.fail_without_changes:
    - name: >-
        tls: no certificate for {{ tls.node }} from the TLS CA
        {%- if tls.is_ca %} (this node is the CA: are {{ tls.ca_cert_file }} and its key there, see sls tls_ca?)
        {%- else %} minion {{ tls.ca_server }} after {{ tls.ca_retry.attempts }} attempts: check that it answers
        (salt {{ tls.ca_server }} test.ping), that the master allows peer calls to
        x509.sign_remote_certificate (master.d/peer.conf, then restart salt-master), that
        {{ tls.ca_server }}'s highstate made the CA (sls tls_ca) and that its pillar has the policy
        (salt {{ tls.ca_server }} pillar.item x509_signing_policies:{{ tls.policy }}); the node keeps
        its old certificate, if any
        {%- endif %}
    - onfail:
      - x509: {{ cert_state }}
{%- endif %}
{%- if tls.is_ca or tls.ca_cert %}

tls-ca-trust-file-managed:
  file.managed:
    - name: {{ tls.trust_file }}
{%-   if tls.is_ca %}
    - source: {{ tls.ca_cert_file }}
    - require:
      - sls: tls_ca
{%-   else %}
    - contents: {{ tls.ca_cert | json }}
{%-   endif %}
    - user: root
    - group: root
    - mode: '0644'
    - makedirs: True

tls-ca-trust-update-cmd-run:
  cmd.run:
    - name: {{ tls.update_cmd }}
    - onchanges:
      - file: tls-ca-trust-file-managed
    - require:
      - pkg: tls-pkg-installed
{%- else %}

{#- the deployer's highstate makes the CA certificate; the nodes' pillar has it from then on #}
tls-ca-trust-missing-test-fail-without-changes:
  test.fail_without_changes:
    - name: >-
        tls: no CA certificate in the pillar of {{ tls.node }} (deploy:tls_ca_cert): apply the
        highstate of the deployer {{ tls.ca_server }} first (sls tls_ca makes it), then this one
{%- endif %}

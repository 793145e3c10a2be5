{#- The cluster TLS CA on the deployer: its private key (made here once, root-only, in the
    secrets directory) and its self-signed certificate. The deployer's minion signs the nodes'
    certificates with them under its x509_signing_policies (pillar, one tls_<id> per node),
    asked over the Salt bus (master.d/peer.conf); salt/tls asks for them. #}
{%- from 'tls_ca/map.jinja' import tls_ca with context %}
{%- if not tls_ca.key or not tls_ca.cert %}
{{ raise('tls_ca: no pillar deploy:tls_ca for ' ~ tls_ca.minion_id ~ ': only the inventory\'s deployer is the TLS CA (pillar/cluster/init.sls)') }}
{%- endif %}
{%- set key_dir = tls_ca.key.rsplit('/', 1)[0] %}

tls-ca-dir-file-directory:
  file.directory:
    - name: {{ key_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: True

{#- made once: an existing key is never replaced (new: False), only kept root 0600 #}
tls-ca-private-key-x509-private-key-managed:
  x509.private_key_managed:
    - name: {{ tls_ca.key }}
    - algo: {{ tls_ca.key_algo }}
    - keysize: {{ tls_ca.key_size }}
    - new: False
    - user: root
    - group: root
    - mode: '0600'
    - require:
      - file: tls-ca-dir-file-directory

tls-ca-certificate-x509-certificate-managed:
  x509.certificate_managed:
    - name: {{ tls_ca.cert }}
    - signing_private_key: {{ tls_ca.key }}
    - CN: {{ (tls_ca.common_name ~ ' ' ~ tls_ca.domain) | json }}
    - basicConstraints: 'critical, CA:true, pathlen:0'
    - keyUsage: 'critical, cRLSign, keyCertSign'
    - subjectKeyIdentifier: hash
    - authorityKeyIdentifier: 'keyid:always'
    - days_valid: {{ tls_ca.days_valid }}
    - days_remaining: {{ tls_ca.days_remaining }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - x509: tls-ca-private-key-x509-private-key-managed

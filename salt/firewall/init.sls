{#- The node's firewall: one nftables table (table inet cluster) built from the ports each
    service of the node declares in its own folder (salt/<service>/firewall.yaml, collected and
    resolved by map.jinja). The ruleset is checked with `nft -c` before it replaces the file;
    a change is loaded by cluster-firewall-apply under a rollback timer, confirmed by a new
    connection to the master; cluster-firewall.service loads it at boot. #}
{%- from 'firewall/map.jinja' import firewall with context %}

firewall-pkg-installed:
  pkg.installed:
    - pkgs: {{ firewall.pkgs | json }}

firewall-rules-file-managed:
  file.managed:
    - name: {{ firewall.rules_file }}
    - source: salt://firewall/files/cluster.nft.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    - context:
        firewall: {{ firewall | json }}
    # a ruleset nft refuses never replaces the one in place
    - check_cmd: /usr/sbin/nft -c -f
    - require:
      - pkg: firewall-pkg-installed

firewall-apply-script-file-managed:
  file.managed:
    - name: {{ firewall.apply_script }}
    - source: salt://firewall/files/cluster-firewall-apply.jinja
    - template: jinja
    - makedirs: True
    - user: root
    - group: root
    - mode: '0755'
    - context:
        firewall: {{ firewall | json }}
    - check_cmd: /bin/bash -n

firewall-unit-file-managed:
  file.managed:
    - name: {{ firewall.unit_file }}
    - source: salt://firewall/files/cluster-firewall.service.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        firewall: {{ firewall | json }}

firewall-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: firewall-unit-file-managed

{#- enabled only: starting it would load without the rollback timer (the next state loads) #}
firewall-service-enabled:
  service.enabled:
    - name: {{ firewall.service }}
    - require:
      - cmd: firewall-systemd-daemon-reload-cmd-run

{#- loads when the file differs from what is loaded (or the table is gone); rolls back by
    itself unless the master still answers a new connection #}
firewall-table-loaded-cmd-run:
  cmd.run:
    - name: {{ firewall.apply_script }} --apply
    - unless: {{ firewall.apply_script }} --is-current
    - require:
      - file: firewall-rules-file-managed
      - file: firewall-apply-script-file-managed

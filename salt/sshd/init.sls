{#- Close password SSH, but only after the admin key login works (sls admin). #}
{%- from 'sshd/map.jinja' import sshd with context %}
include:
  - admin

sshd-pkg-installed:
  pkg.installed:
    - pkgs: {{ sshd.pkgs | json }}

sshd-config-dropin-file-managed:
  file.managed:
    - name: {{ sshd.dropin }}
    - mode: '0644'
    - contents: |
        # managed by Salt (salt/sshd)
        {%- for key, value in sshd.settings | dictsort %}
        {{ key }} {{ value }}
        {%- endfor %}
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

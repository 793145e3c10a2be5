{#- Key-only admin account with NOPASSWD sudo; then the default account loses its password,
    its sudo group and its NOPASSWD rule, only once the admin account is in place. #}
{%- from 'admin/map.jinja' import admin with context %}
{%- set admin_ready = [{'ssh_auth': 'admin-keys-ssh-auth-manage'}, {'file': 'admin-sudoers-file-managed'}] %}

admin-pkg-installed:
  pkg.installed:
    - pkgs: {{ admin.pkgs | json }}

admin-user-present:
  user.present:
    - name: {{ admin.user }}
    - shell: /bin/bash
    - createhome: True
    - remove_groups: False

admin-keys-ssh-auth-manage:
  ssh_auth.manage:
    - user: {{ admin.user }}
    - ssh_keys: {{ admin.pubkeys | json }}
    - require:
      - user: admin-user-present

admin-sudoers-file-managed:
  file.managed:
    - name: {{ admin.sudoers_dir }}/020_{{ admin.user }}-nopasswd
    - contents: "{{ admin.user }} ALL=(ALL) NOPASSWD: ALL"
    - mode: '0440'
    - user: root
    - group: root
    - check_cmd: /usr/sbin/visudo -c -f
    - require:
      - pkg: admin-pkg-installed
      - user: admin-user-present

admin-default-user-password-locked:
  cmd.run:
    - name: passwd -l {{ admin.default_user }}
    - onlyif: test "$(passwd -S {{ admin.default_user }} 2>/dev/null | cut -d' ' -f2)" = P
    - require: {{ admin_ready | json }}

admin-default-user-not-in-sudo:
  cmd.run:
    - name: gpasswd -d {{ admin.default_user }} sudo
    - onlyif: id -nG {{ admin.default_user }} 2>/dev/null | grep -qw sudo
    - require: {{ admin_ready | json }}

admin-default-user-nopasswd-file-absent:
  file.absent:
    - name: {{ admin.default_user_sudoers }}
    - require: {{ admin_ready | json }}

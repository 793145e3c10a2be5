{#- The vanilla image's default account (pi) removed, home and group with it: highstate only.
    The salt-ssh bootstrap logs in as that account (sls admin locks it, in the same session), so
    it cannot be deleted there; a highstate runs from the minion, not in its session. The
    bootstrap's session may still be closing when the first highstate starts (cluster.rebuild:
    the new minion's start event starts it), so its processes get a minute to end before they
    are stopped. Never from inside one of its sessions (bootstrap/deployer runs the deployer's
    first, masterless apply as pi, through sudo): the next highstate does it. Only once the admin
    account works (sls admin). #}
{%- from 'admin/map.jinja' import admin with context %}
{%- set user = admin.default_user %}
include:
  - admin

admin-default-user-absent-cmd-run:
  cmd.run:
    - name: |
        for i in $(seq {{ admin.default_user_session_wait }}); do pgrep -u {{ user }} >/dev/null || break; sleep 1; done
        loginctl terminate-user {{ user }} 2>/dev/null || true
        pkill -KILL -u {{ user }} || true
        userdel --remove {{ user }} 2>&1 || ! id -u {{ user }} >/dev/null 2>&1
    - onlyif: id -u {{ user }}
    # an ancestor of this run owned by the account: we are in one of its sessions
    - unless: |
        uid=$(id -u {{ user }}) pid=$$
        while [ "$pid" -gt 1 ]; do
            [ "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)" = "$uid" ] && exit 0
            pid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status)
        done
        exit 1
    # userdel refuses while a killed process of the account is still being reaped
    - retry: {attempts: 3, interval: 2}
    - require:
      - ssh_auth: admin-keys-ssh-auth-manage
      - file: admin-sudoers-file-managed
      - file: admin-default-user-nopasswd-file-absent

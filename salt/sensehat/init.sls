{#- The Sense HAT status display on a node with a Sense HAT (grain sense_hat,
    _grains/sense_hat.py), or with sensehat:lookup:emulator true on one without: the driver
    (files/cluster_leds.py) and its unit, which redraws the LED matrix from the status file
    every few seconds. Anywhere else this renders to nothing: the lab has no HAT. #}
{%- from 'sensehat/map.jinja' import sensehat with context %}
{%- if sensehat.detected or sensehat.emulator %}
{%-   if not sensehat.emulator and sensehat.library_pkgs %}

sensehat-pkg-installed:
  pkg.installed:
    - pkgs: {{ sensehat.library_pkgs | json }}
{%-   endif %}
{%-   if sensehat.emulator %}

# sense-emu comes from pip, by hand: fail clearly rather than let the unit crash-loop.
sensehat-emulator-library-test-fail-without-changes:
  test.fail_without_changes:
    - name: sense_emu importable by {{ sensehat.python }}
    - comment: {{ ('sensehat: ' ~ sensehat.python ~ ' cannot import sense_emu; install the Sense HAT emulator'
                  ~ ' (pip install sense-emu) or point sensehat:lookup:python at a Python that has it') | json }}
    - unless: {{ (sensehat.python ~ " -c 'import sense_emu'") | json }}
{%-   endif %}
{%-   if sensehat.create_user %}

# The driver's account: no shell, no password; its home is the unit's StateDirectory.
sensehat-user-present:
  user.present:
    - name: {{ sensehat.user }}
    - system: True
    - usergroup: True
    - createhome: False
    - home: /var/lib/{{ sensehat.state_dir }}
    - shell: /usr/sbin/nologin
    - optional_groups: {{ sensehat.groups | json }}
{%-   endif %}

sensehat-driver-file-managed:
  file.managed:
    - name: {{ sensehat.driver }}
    - source: salt://sensehat/files/cluster_leds.py
    - makedirs: True
    - user: root
    - group: root
    - mode: '0755'

sensehat-unit-file-managed:
  file.managed:
    - name: {{ sensehat.unit_file }}
    - makedirs: True
    - source: salt://sensehat/files/cluster-leds.service.jinja
    - template: jinja
    - user: root
    - group: root
    - mode: '0644'
    - context:
        sensehat: {{ sensehat | json }}

sensehat-systemd-daemon-reload-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: sensehat-unit-file-managed

sensehat-service-running:
  service.running:
    - name: {{ sensehat.service }}
    - enable: True
    - require:
      - cmd: sensehat-systemd-daemon-reload-cmd-run
{%-   if sensehat.emulator %}
      - test: sensehat-emulator-library-test-fail-without-changes
{%-   elif sensehat.library_pkgs %}
      - pkg: sensehat-pkg-installed
{%-   endif %}
    - watch:
{%-   if sensehat.create_user %}
      - user: sensehat-user-present
{%-   endif %}
      - file: sensehat-driver-file-managed
      - file: sensehat-unit-file-managed
{%- endif %}

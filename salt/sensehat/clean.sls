{#- sensehat removed from a node that no longer has it (salt/lib/clean.jinja): the LED driver's
    unit stopped and disabled, the Sense HAT library purged (not with the emulator, which the
    state never installs), the driver and the unit gone, then the driver's account. Nothing
    where it never was (mark: the unit or the driver). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set sensehat = cleandata('sensehat', ['unit_file', 'driver']) | load_json %}
{{ clean('sensehat', sensehat, units=[sensehat.service],
         pkgs=[] if sensehat.emulator else sensehat.library_pkgs,
         users=[sensehat.user] if sensehat.create_user else [],
         files=[sensehat.driver.rsplit('/', 1)[0], sensehat.unit_file]) }}

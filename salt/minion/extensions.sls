{#- The custom modules (salt://_modules, _states, _grains, _beacons) synced when the master's
    copy changed: deploy:extension_modules is their digest, the stamp the digest this minion
    synced last. The minion does not sync before every highstate (minion:loader says why); a new
    node is synced by orch.cluster / orch.rebuild before its first highstate, whose render may
    call them. The modules are reloaded at once (refresh), for the states after this one. #}
{%- from 'minion/map.jinja' import minion with context %}

minion-extension-modules-saltutil-sync-all:
  saltutil.sync_all:
    - refresh: True
    - unless: grep -qxF {{ minion.extension_modules }} {{ minion.extensions_stamp }}

minion-extension-modules-stamp-file-managed:
  file.managed:
    - name: {{ minion.extensions_stamp }}
    - mode: '0644'
    - contents: {{ minion.extension_modules }}
    - require:
      - saltutil: minion-extension-modules-saltutil-sync-all

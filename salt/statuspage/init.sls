{#- The live status page, served by salt/httpd on both lanservices nodes (so on the VIP):
    the page and its schema, and the minion's scheduler running statuspage.collect, which
    rewrites status.json from this node, its peer and the deployer's feed. It runs in the
    minion, not as a job of the master: the page keeps going while the deployer is down. #}
{%- from 'statuspage/map.jinja' import statuspage with context %}
include:
  - httpd

{%- for file in ['index.html', 'status.schema.json'] %}

statuspage-{{ file | replace('.', '-') }}-file-managed:
  file.managed:
    - name: {{ statuspage.web_root }}/{{ file }}
    - source: salt://statuspage/files/{{ file }}
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - sls: httpd
{%- endfor %}

statuspage-collect-schedule-present:
  schedule.present:
    - name: statuspage-collect
    - function: statuspage.collect
    - job_kwargs:
        web_root: {{ statuspage.web_root }}
        me: {{ statuspage.me }}
        peer: {{ statuspage.peer }}
        peer_url: {{ statuspage.peer_url }}
        feed_url: {{ statuspage.feed_url }}
        deployer: {{ statuspage.deployer }}
        vip: {{ statuspage.vip }}
        timeout: {{ statuspage.timeout }}
        max_age: {{ statuspage.max_age }}
    - seconds: {{ statuspage.interval }}
    - maxrunning: 1
    - return_job: False
    - run_on_start: True
    - require:
      - file: statuspage-index-html-file-managed

{#- statuspage removed from a node that no longer has it: the collector's schedule gone, and the
    page's files in httpd's web root (httpd.clean takes the chroot itself). Nothing where the page
    never was (mark: its index.html in httpd's chroot). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set httpd = cleandata('httpd', ['chroot/www/index.html']) | load_json %}
{%- set www = httpd.chroot ~ '/www/' %}
{%- if httpd.present %}

statuspage-clean-collect-schedule-absent:
  schedule.absent:
    - name: statuspage-collect
{%- endif %}
{{ clean('statuspage', httpd, files=[www ~ 'index.html', www ~ 'status.schema.json', www ~ 'status.json', www ~ 'self.json']) }}

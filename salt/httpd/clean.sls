{#- httpd removed from a node that no longer has it (salt/lib/clean.jinja): bbhttpd stopped and
    disabled, the chroot (with the pages), the defaults and the unit gone, then its account.
    busybox-static stays (httpd:clean_pkgs). Nothing where httpd never was (mark: the unit or
    the chroot's config). #}
{%- from 'lib/map.jinja' import cleandata with context %}
{%- from 'lib/clean.jinja' import clean with context %}
{%- set httpd = cleandata('httpd', ['unit_file', 'chroot/etc/httpd.conf']) | load_json %}
{{ clean('httpd', httpd, units=[httpd.service], pkgs=httpd.clean_pkgs, users=[httpd.user],
         files=[httpd.chroot, httpd.defaults_file, httpd.unit_file]) }}

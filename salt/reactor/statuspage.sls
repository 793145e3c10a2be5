{#- Ask for the live status page's data to be published again: statuspage.request leaves a
    mark that the master's scheduled statuspage.publish (its own process, every 5 s) acts on;
    the work stays out of the reactor. Only the events that change the page: a minion start,
    presence, and the returns of highstates and orchestrations (not the status batch's own
    jobs, nor this runner's). #}
{%- set fun = data.get('fun', '') %}
{%- set changes_page = fun in ['state.apply', 'state.highstate', 'state.sls', 'runner.state.orchestrate',
                                'runner.state.orch', 'runner.cluster.orchestrate']
                       or tag.startswith('salt/minion/') or tag == 'salt/presence/change' %}
{%- if changes_page %}
reactor-statuspage-request:
  runner.statuspage.request: []
{%- endif %}

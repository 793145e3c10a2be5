{#- ssh_ca's clean removes nothing, on purpose. What ssh_ca keeps is the cluster's SSH CA: the key
    and the user certificates live in the secrets directory (never deleted by a state: losing the
    key means re-certifying every node), the CA line of salt-ssh's known_hosts belongs to the
    salt-master's salt-ssh (salt/master). Moving the deployer is a migration by hand
    (bootstrap/deployer on the new one, the secrets directory copied), not a highstate. #}

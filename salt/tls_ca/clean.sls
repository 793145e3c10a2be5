{#- tls_ca's clean removes nothing, on purpose. The TLS CA's key and certificate live in the
    secrets directory (never deleted by a state: every node's certificate and trust store hang
    on them). Moving the deployer is a migration by hand (bootstrap/deployer on the new one, the
    secrets directory copied), not a highstate. #}

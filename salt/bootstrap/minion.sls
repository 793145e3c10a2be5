{#- First contact with a fresh node, over salt-ssh from the deployer:
      salt-ssh '*' state.apply bootstrap.minion
    The node's static address, the admin account and its keys, password SSH closed, the
    default password locked, and a connected salt-minion with its pre-seeded key. Every highstate keeps the same states
    (common includes them). #}
include:
  - network
  - admin
  - sshd
  - minion

{#- First contact with a fresh node, over salt-ssh from the deployer:
      salt-ssh '*' state.apply bootstrap.minion
    The admin account and its keys, password SSH closed, the default password locked, and a
    connected salt-minion with its pre-seeded key. Every highstate keeps the same states
    (common includes them). #}
include:
  - admin
  - sshd
  - minion

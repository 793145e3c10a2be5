"""`make bench`: the cluster's figures on the virtual lab, one table (figure | value | method).

    python -m bench [--no-cold] [--only PART ...]     (root, from the repository root)

Parts, in the order they run: the DNS and DHCP data of a 250-node inventory (bench/scale.py:
no lab needed, nor root, when it runs alone), cold `make lab` (bench/cluster.py), no-op highstate
(all nodes, one node), the salt-ssh rerun of the bootstrap, DNS propagation and VIP failover +
DHCP leases (bench/lanservices.py), rebuild MTTR of gamma and beta, zero-touch MTTR of epsilon
(reflashed, no command), the status page. The table is also written as JSON under the lab's
state directory (bench/last.json).
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

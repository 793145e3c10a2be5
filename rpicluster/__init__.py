"""
The cluster model as a plain Python package: :mod:`rpicluster.model` loads and validates the
inventory, :mod:`rpicluster.views` derives what everything else needs from it.

Imported normally by the master's ext_pillar (``_pillar/cluster.py``) and runner, the pillar
top, the salt-ssh roster, the bootstrap scripts, the lab and the tests. On the deployer,
bootstrap/deployer puts it on the Python path of Salt's venv (/opt/salt); minions never need it.
"""

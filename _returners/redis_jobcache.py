"""
The master's job cache in Redis: saltext-redis's ``redis`` returner, for jobs that carry bytes.

saltext-redis 1.0.2 stores a job's load and returns as JSON, which has no bytes. x509_v2's
remote signing sends the node's public key and gets its certificate back as DER bytes, so the
master lost that job's load and return ("Object of type bytes is not JSON serializable") and the
node's peer publish never got the CA's answer. This returner stores bytes as ``b64:<base64>``
strings, which every x509_v2 loader reads back (``salt.utils.x509.load_file_or_bytes``), and
hands everything else to saltext-redis unchanged: same keys, same options (``redis.*``), same
data for ``salt-run jobs.*`` and ``cluster.history``.

Master configuration (master.d/redis.conf):

.. code-block:: yaml

    master_job_cache: redis_jobcache
    returner_dirs:
      - /srv/cluster/_returners

CLI Example:

.. code-block:: bash

    salt-run jobs.lookup_jid 20261202101500123456
"""

import base64

try:
    from saltext.redis.returners import redis_return as _redis

    HAS_SALTEXT_REDIS = True
except ImportError:
    HAS_SALTEXT_REDIS = False

__virtualname__ = "redis_jobcache"


def __virtual__():
    if not HAS_SALTEXT_REDIS:
        return (False, "redis_jobcache: saltext-redis is not installed (bootstrap/deployer installs it)")
    if not _redis.HAS_REDIS:
        return (False, "redis_jobcache: the redis Python client is not installed")
    return __virtualname__


_POOL = None  # this loader's Redis connection (saltext-redis keeps one per module, shared here)


def _call(function, *args, **kwargs):
    """Run saltext-redis's ``function`` with this loader's configuration and connection."""
    global _POOL  # pylint: disable=global-statement
    _redis.__opts__ = __opts__
    _redis.__salt__ = __salt__
    _redis.REDIS_POOL = _POOL
    try:
        return getattr(_redis, function)(*args, **kwargs)
    finally:
        _POOL = _redis.REDIS_POOL


def _jsonable(data):
    """``data`` with every bytes value as a ``b64:`` string (JSON has no bytes)."""
    if isinstance(data, bytes | bytearray):
        return "b64:" + base64.b64encode(bytes(data)).decode("ascii")
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    if isinstance(data, list | tuple | set):
        return [_jsonable(value) for value in data]
    return data


def returner(ret):
    """
    Store a minion's return for its job.

    CLI Example:

    .. code-block:: bash

        salt '*' test.ping --return redis_jobcache
    """
    return _call("returner", _jsonable(ret))


def save_load(jid, load, minions=None):
    """Store the job's load (its function and arguments)."""
    return _call("save_load", jid, _jsonable(load), minions=minions)


def save_minions(jid, minions, syndic_id=None):
    """Included for the job cache interface (saltext-redis keeps no minion list per job)."""
    return _call("save_minions", jid, minions, syndic_id=syndic_id)


def get_load(jid):
    """The load of a job."""
    return _call("get_load", jid)


def get_jid(jid):
    """The returns of a job, by minion."""
    return _call("get_jid", jid)


def get_fun(fun):
    """The last job of each minion that ran ``fun``."""
    return _call("get_fun", fun)


def get_jids():
    """Every job in the cache."""
    return _call("get_jids")


def get_minions():
    """Every minion that returned a job."""
    return _call("get_minions")


def clean_old_jobs():
    """Drop the returns of jobs whose load expired."""
    return _call("clean_old_jobs")


def prep_jid(nocache=False, passed_jid=None):
    """A new job id (or the one passed)."""
    return _call("prep_jid", nocache=nocache, passed_jid=passed_jid)

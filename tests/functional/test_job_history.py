"""
``salt-run cluster.history`` (_runners/cluster.py) against a real redis-server: jobs are
written by the master's job cache returner (saltext-redis underneath) exactly as the master writes them (a minion
highstate's return, an orchestration runner's return stored under ``<master>_master``),
then read back as the page's run list: kinds, counts, failed state names, changed keys only,
secrets blanked, and only the jobs published since the last call read again.
"""

import copy
import datetime
import json

import pytest

import salt.config
import salt.loader
from tests.conftest import INVENTORY, REPO, load_by_path

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
runner = load_by_path("cluster_runner_history", REPO / "_runners" / "cluster.py")
SECRET = "tsig-secret-value-0123456789abcdef"
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def jid(minutes_ago):
    """A job id published that many minutes ago (utc_jid)."""
    return (NOW - datetime.timedelta(minutes=minutes_ago)).strftime("%Y%m%d%H%M%S%f")
MASTER = "psi.lab_master"


def state(sid, fun, name, result=True, changes=None, comment="", start="18:45:01.000000", ms=100.0):
    mod, _, func = fun.partition(".")
    return {
        f"{mod}_|-{sid}_|-{name}_|-{func}": {
            "__id__": sid, "name": name, "result": result, "changes": changes or {}, "comment": comment,
            "start_time": start, "duration": ms, "__run_num__": 0, "__sls__": "x",
        }
    }


HEALTHY = {**state("common-hosts-file-managed", "file.managed", "/etc/hosts"),
           **state("mpich-pkg-installed", "pkg.installed", "mpich", start="18:45:02.000000", ms=900.0)}
FAILING = {
    **state("common-hosts-file-managed", "file.managed", "/etc/hosts",
            changes={"diff": f"+key {SECRET}"}),
    **state("mpich-hosts-file-managed", "file.managed", "/etc/mpich/hosts", result=False,
            comment=f"Parent directory not present; secret {SECRET} must not show", start="18:45:03.500000"),
}


@pytest.fixture
def opts(tmp_path, redis_server):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tsig.key").write_text(f'key "xfer" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n{SECRET}\n')
    return dict(
        copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS),
        **{
            "cluster_inventory": str(INVENTORY),
            "cluster_secrets_dir": str(secrets),
            "cachedir": str(tmp_path / "cache"),
            "master_job_cache": "redis_jobcache",
            "returner_dirs": [str(REPO / "_returners")],
            "redis.unix_socket_path": str(redis_server),
            "redis.db": "0",
            "keep_jobs_seconds": 86400,
            "utc_jid": True,
            "__role": "master",
        },
    )


@pytest.fixture
def configure_loader_modules(opts):
    return {runner: {"__opts__": opts, "__context__": {}}}


@pytest.fixture
def cache(opts):
    """The master's job cache returner (_returners/redis_jobcache.py on saltext-redis), as the master uses it."""
    returners = salt.loader.returners(opts, {"config.option": lambda key, default=None, **_: opts.get(key, default)})

    def minion_job(jid, fun, args, rets):
        returners["redis_jobcache.save_load"](jid, {"jid": jid, "fun": fun, "arg": args, "tgt": list(rets), "tgt_type": "list"})
        for minion, ret in rets.items():
            returners["redis_jobcache.returner"]({"jid": jid, "id": minion, "fun": fun, "fun_args": args, "return": ret,
                                         "success": True, "retcode": 0})

    def orchestration(jid, mods, states, success=True, node=None):
        ret = {"fun": "runner.cluster.orchestrate", "jid": jid, "user": "Reactor",
               "fun_args": [{"mods": mods, "pillar": {"node": node} if node else {}}],
               "return": {"data": {MASTER: states}, "outputter": "highstate", "retcode": 0 if success else 1},
               "success": success}
        doc = {"id": MASTER, "tgt": MASTER, "jid": jid, "return": ret, "fun": "runner.cluster.orchestrate",
               "user": "Reactor"}
        returners["redis_jobcache.save_load"](jid, doc)  # the master saves a runner's return as its load too
        returners["redis_jobcache.returner"](doc)

    return minion_job, orchestration


J1, J2, J3, J4 = jid(4), jid(3), jid(2), jid(1)


def test_highstates_and_orchestrations_newest_first(cache):
    minion_job, orchestration = cache
    minion_job(J1, "state.apply", [], {"alpha": HEALTHY, "gamma": FAILING})
    minion_job(J2, "test.ping", [], {"alpha": True})
    minion_job(J3, "state.apply", ["bind"], {"alpha": HEALTHY})  # not a highstate
    orchestration(J4, "orch.rebuild", HEALTHY, node="gamma")

    runs = runner.history()
    assert [(r["jid"], r["node"], r["kind"]) for r in runs] == [
        (J4, "gamma", "orchestration"),  # orch.rebuild of gamma (its pillar node)
        (J1, "alpha", "highstate"),
        (J1, "gamma", "highstate"),
    ]
    orch, alpha, gamma = runs
    assert orch["mods"] == "orch.rebuild" and orch["fun"] == "cluster.orchestrate" and orch["result"] is True
    assert alpha["result"] is True and (alpha["states"], alpha["changes"], alpha["failures"]) == (2, 0, 0)
    assert alpha["duration"] == 1.9  # from the first state's start to the last one's end
    assert alpha["started"] == (NOW - datetime.timedelta(minutes=4)).isoformat()
    assert gamma["result"] is False and (gamma["changes"], gamma["failures"]) == (1, 1)
    assert [(f["id"], f["function"], f["name"]) for f in gamma["failed"]] == [
        ("mpich-hosts-file-managed", "file.managed", "/etc/mpich/hosts")
    ]
    assert gamma["changed"] == [{"id": "common-hosts-file-managed", "function": "file.managed",
                                 "name": "/etc/hosts", "keys": ["diff"]}]
    assert SECRET not in json.dumps(runs) and "[secret]" in gamma["failed"][0]["comment"]
    assert [(r["node"], r["kind"]) for r in runner.history(node="gamma")] == [("gamma", "orchestration"),
                                                                           ("gamma", "highstate")]
    assert len(runner.history(limit=1)) == 1


def test_only_new_jobs_are_read_again_and_a_late_return_is_not_lost(cache, monkeypatch):
    minion_job, orchestration = cache
    minion_job(J1, "state.apply", [], {"alpha": HEALTHY})
    runner.history()
    read = []
    real = runner._history_job
    monkeypatch.setattr(runner, "_history_job", lambda load: read.append(load.get("jid")) or real(load))
    minion_job(J2, "test.ping", [], {"alpha": True})
    orchestration(J4, "orch.cluster", FAILING, success=False)
    runs = runner.history()
    assert read == [J2, J4]
    # a long job returns after newer ones were read: it is still found, and only it is read
    minion_job(J3, "state.highstate", [], {"beta": HEALTHY})
    read.clear()
    runs = runner.history()
    assert read == [J3]
    assert [(r["kind"], r["node"]) for r in runs] == [("orchestration", "master"), ("highstate", "beta"),
                                                      ("highstate", "alpha")]
    assert runs[0]["result"] is False


def test_a_render_error_is_a_failed_run_naming_it(cache):
    minion_job, _ = cache
    minion_job(J1, "state.highstate", [], {"beta": ["Rendering SLS 'base:bind' failed: oops"]})
    (run,) = runner.history()
    assert run["result"] is False and run["failures"] == 1
    assert run["failed"][0]["id"] == "(render)" and "Rendering SLS" in run["failed"][0]["comment"]

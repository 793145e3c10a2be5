"""Secrets sealed in git (issue 14): bootstrap/generate-secrets with the real gpg binary, and the
pillar rendered as the master renders it (Salt's pillar compiler over the real pillar tree, the
`#!jinja|yaml|gpg` role files, Salt's gpg renderer with gpg_decrypt_must_succeed).

- generate-secrets makes the deployer's key (keydir 0700, public key in the repository) and a
  sealed copy of every file it manages, which decrypts to that file; a second run changes nothing;
- the pillar hands each minion its role's secrets decrypted, by minion ID;
- a sealed copy encrypted to another key fails that pillar render, naming it: nothing handed out;
- the repository plus the exported private key give the same secrets directory back; without the
  key, generate-secrets refuses and touches nothing;
- adding a secret is one line in SECRETS; anyone can seal one with the public key alone.
"""

import copy
import importlib.machinery
import importlib.util
import os
import shutil
import stat
import subprocess
from types import SimpleNamespace

import pytest

import salt.pillar
from tests.conftest import (
    GENERATE_SECRETS,
    INVENTORY,
    STATE_TREE,
    cluster_pillar_opts,
    make_secrets,
    secrets_layout,
    secrets_opts,
    stop_gpg_agents,
)

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs the gpg binary (package gnupg)")

NODES = ("psi", "alpha", "beta", "delta", "epsilon", "gamma", "zeta")
PGP = "-----BEGIN PGP MESSAGE-----"


def gpg(home, *args, data=None, check=True):
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet", *map(str, args)],
                          input=data, capture_output=True, check=check)


def tree(path):
    """{relative path: (mode, bytes, mtime_ns)} of every file under ``path``."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            st = os.stat(full)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, path)] = (stat.S_IMODE(st.st_mode), handle.read(), st.st_mtime_ns)
    return out


def contents(path):
    return {rel: (mode, data) for rel, (mode, data, _mtime) in tree(path).items()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    secrets = tmp_path_factory.mktemp("sealed") / "cluster-secrets"
    proc = make_secrets(secrets, "--inventory", INVENTORY)
    keydir, repo = secrets_layout(secrets)
    return SimpleNamespace(secrets=secrets, keydir=keydir, repo=repo, sealed=repo / "pillar/secrets/sealed",
                           public=repo / "pillar/secrets/deployer.pub.asc", out=proc.stdout)


@pytest.fixture(scope="module")
def master_opts(salt_factories, made):
    """A master's configuration as bootstrap/deployer writes it (no daemon is started)."""
    factory = salt_factories.salt_master_daemon(
        "secrets-master",
        overrides={
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(INVENTORY),
            "pillar_safe_render_error": True,
            **secrets_opts(made.secrets),
        },
    )
    return factory.config.copy()


def render(opts, minion_id, sealed_root=None):
    """The pillar the master compiles for ``minion_id``; ``sealed_root``: another pillar root
    holding the sealed copies instead of the one generate-secrets wrote (the repo's pillar/)."""
    opts = copy.deepcopy(opts)
    if sealed_root:
        roots = opts["pillar_roots"]["base"]
        opts["pillar_roots"]["base"] = [r for r in roots if not r.endswith("/repo/pillar")] + [str(sealed_root)]
        assert len(opts["pillar_roots"]["base"]) == len(roots)
    return salt.pillar.get_pillar(opts, {"id": minion_id}, minion_id, saltenv="base").compile_pillar()


def load_tool(name):
    """bootstrap/generate-secrets as a module (a file without a .py suffix)."""
    loader = importlib.machinery.SourceFileLoader(name, str(GENERATE_SECRETS))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


def plain(made, name):
    return (made.secrets / name).read_text().rstrip("\n")


# --- generate-secrets --------------------------------------------------------------------------


def test_the_key_and_a_sealed_copy_of_every_secret_are_made(made):
    assert stat.S_IMODE(made.keydir.stat().st_mode) == 0o700
    listing = gpg(made.keydir, "--with-colons", "--list-secret-keys").stdout.decode()
    assert [line[:4] for line in listing.splitlines()].count("sec:") == 1
    assert ":ed25519:" in listing and ":cv25519:" in listing  # modern curves, an encryption subkey
    assert made.public.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "made in" in made.out and "--export-secret-keys" in made.out  # the admin is told to back it up

    expected = {"tsig.key", "omapi.key", "vrrp.password", "k3s.token", "redis.password",
                "mpi_ed25519", "mpi_ed25519.pub", "ssh/deployer_ed25519", "ssh/deployer_ed25519.pub",
                "ssh/ca_ed25519", "ssh/ca_ed25519.pub", "master-key/master.pem", "master-key/master.pub"}
    expected |= {f"minion-keys/{n}.{ext}" for n in NODES for ext in ("pem", "pub")}
    sealed = {str(p.relative_to(made.sealed))[: -len(".asc")] for p in made.sealed.rglob("*.asc")}
    assert sealed == expected
    assert set(tree(made.secrets)) == expected
    for rel in expected:
        copy_ = (made.sealed / f"{rel}.asc").read_text()
        assert copy_.startswith(PGP) and plain(made, rel).splitlines()[0] not in copy_
        assert gpg(made.keydir, "--decrypt", made.sealed / f"{rel}.asc").stdout == (made.secrets / rel).read_bytes(), rel


def test_a_sealed_copy_needs_the_private_key(made, tmp_path):
    """What is in git is useless without the deployer's key."""
    stranger = tmp_path / "stranger"
    stranger.mkdir(mode=0o700)
    try:
        out = gpg(stranger, "--decrypt", made.sealed / "tsig.key.asc", check=False)
        assert out.returncode != 0 and not out.stdout
    finally:
        stop_gpg_agents([stranger])


def test_a_second_run_changes_nothing(made):
    before_secrets, before_repo, before_keys = tree(made.secrets), tree(made.repo), contents(made.keydir / "private-keys-v1.d")
    out = make_secrets(made.secrets, "--inventory", INVENTORY).stdout
    assert out.splitlines() == [f"{made.secrets}: {what} nothing" for what in ("restored", "created", "sealed")]
    assert tree(made.secrets) == before_secrets  # not even rewritten (same mtimes)
    assert tree(made.repo) == before_repo
    assert contents(made.keydir / "private-keys-v1.d") == before_keys


def test_a_secret_that_differs_from_its_sealed_copy_is_refused(made, tmp_path):
    secrets = tmp_path / "cluster-secrets"
    shutil.copytree(made.secrets, secrets)
    for name in ("gpgkeys", "repo"):
        os.symlink(made.secrets.parent / name, tmp_path / name)
    (secrets / "vrrp.password").write_text("changed\n")
    proc = make_secrets(secrets, check=False)
    assert proc.returncode == 1
    assert "vrrp.password differs from its sealed copy" in proc.stderr and "changed" not in proc.stderr


# --- the pillar, as the master renders it ------------------------------------------------------


def test_each_role_gets_its_secrets_decrypted_by_minion_id(master_opts, made):
    alpha, delta, psi = (render(master_opts, n) for n in ("alpha", "delta", "psi"))
    for pillar in (alpha, delta, psi):
        assert "_errors" not in pillar, pillar.get("_errors")
        assert PGP not in repr(pillar)  # nothing handed out still sealed
    assert alpha["secrets"] == {
        "tsig_key": plain(made, "tsig.key"),
        "omapi_key": plain(made, "omapi.key"),
        "vrrp_password": plain(made, "vrrp.password"),
    }
    assert delta["secrets"] == {
        "k3s_token": plain(made, "k3s.token"),
        "mpi_ssh_key": plain(made, "mpi_ed25519"),
        "mpi_ssh_pub": plain(made, "mpi_ed25519.pub"),
    }
    assert psi["secrets"] == {"redis_password": plain(made, "redis.password")}
    # each node its own minion key, and no other's
    assert alpha["minion_key"] == {"pem": plain(made, "minion-keys/alpha.pem"), "pub": plain(made, "minion-keys/alpha.pub")}
    assert plain(made, "minion-keys/beta.pem") not in repr(alpha)


@pytest.fixture
def foreign_sealed(made, tmp_path):
    """The repository's sealed copies, with tsig.key.asc sealed to another key than the deployer's
    (made with the one documented command, from that key's public key alone)."""
    other = tmp_path / "other-keys"
    other.mkdir(mode=0o700)
    gpg(other, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-generate-key", "other <o@x>",
        "ed25519", "cert", "never")
    fpr = next(line.split(":")[9] for line in gpg(other, "--with-colons", "--list-secret-keys").stdout.decode().splitlines()
               if line.startswith("fpr:"))
    gpg(other, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-add-key", fpr, "cv25519", "encr", "never")
    (tmp_path / "other.pub.asc").write_bytes(gpg(other, "--armor", "--export", fpr).stdout)
    root = tmp_path / "pillar"
    shutil.copytree(made.repo / "pillar", root)
    bad = root / "secrets/sealed/tsig.key.asc"
    bad.unlink()
    gpg(tmp_path / "other-keys", "--armor", "--encrypt", "--recipient-file", tmp_path / "other.pub.asc",
        "--output", bad, data=b"not-the-clusters-key\n")
    yield root
    stop_gpg_agents([other])


def test_a_secret_sealed_to_another_key_fails_the_render_and_nothing_is_handed_out(master_opts, made, foreign_sealed):
    assert master_opts["gpg_decrypt_must_succeed"] is True
    alpha = render(master_opts, "alpha", sealed_root=foreign_sealed)
    errors = "\n".join(alpha.get("_errors", []))
    assert "secrets.lanservices" in errors, errors  # the failing file, named (details in the master log)
    assert "secrets" not in alpha  # neither the ciphertext nor the pair's other secrets
    assert plain(made, "omapi.key") not in repr(alpha) and PGP not in repr(alpha)
    # only the minions that file is for: a compute node still gets its own secrets
    delta = render(master_opts, "delta", sealed_root=foreign_sealed)
    assert "_errors" not in delta and delta["secrets"]["k3s_token"] == plain(made, "k3s.token")


def test_the_render_error_says_why_when_not_hidden(master_opts, foreign_sealed):
    """With pillar_safe_render_error off (the master log has this text either way)."""
    opts = dict(master_opts, pillar_safe_render_error=False)
    errors = "\n".join(render(opts, "alpha", sealed_root=foreign_sealed)["_errors"])
    assert "Could not decrypt cipher" in errors and "not-the-clusters-key" not in errors


def test_a_missing_sealed_copy_is_a_clear_render_error(master_opts, made, tmp_path):
    root = tmp_path / "pillar"
    shutil.copytree(made.repo / "pillar", root)
    (root / "secrets/sealed/k3s.token.asc").unlink()
    opts = dict(master_opts, pillar_safe_render_error=False)
    errors = "\n".join(render(opts, "delta", sealed_root=root)["_errors"])
    assert "secret k3s.token has no sealed copy" in errors and "run bootstrap/generate-secrets" in errors


# --- rebuild from the repository plus the backed-up key ----------------------------------------


def test_the_repository_and_the_backed_up_key_give_the_same_secrets_back(made, tmp_path):
    backup = tmp_path / "deployer-gpg-key.asc"
    backup.write_bytes(gpg(made.keydir, "--armor", "--export-secret-keys").stdout)
    rebuilt = tmp_path / "rebuilt"
    secrets = rebuilt / "cluster-secrets"
    keydir, repo = secrets_layout(secrets)
    shutil.copytree(made.repo, repo)  # the clone
    pki = rebuilt / "pki-master"
    try:
        # without the key: refused, nothing made
        refused = make_secrets(secrets, "--inventory", INVENTORY, check=False)
        assert refused.returncode == 1 and "import the backed-up key" in refused.stderr
        assert not secrets.exists() and contents(repo) == contents(made.repo)
        # bootstrap/deployer --gpg-key FILE: the same import, then generate-secrets
        gpg(keydir, "--import", backup)
        out = make_secrets(secrets, "--inventory", INVENTORY, "--master-pki", pki).stdout.splitlines()
        assert out[1:] == [f"{secrets}: created nothing", f"{secrets}: sealed nothing"]
        assert contents(secrets) == contents(made.secrets)  # every file, its bytes and its mode
        assert contents(repo) == contents(made.repo)
        assert (pki / "master.pem").read_bytes() == (made.secrets / "master-key/master.pem").read_bytes()
        assert stat.S_IMODE((pki / "master.pem").stat().st_mode) == 0o600
        again = make_secrets(secrets, "--inventory", INVENTORY, "--master-pki", pki).stdout.splitlines()
        assert again == [f"{secrets}: {what} nothing" for what in ("restored", "created", "sealed")]
    finally:
        stop_gpg_agents([keydir])


def test_a_master_key_other_than_the_clusters_is_refused_and_an_old_one_adopted(made, tmp_path):
    secrets = tmp_path / "cluster-secrets"
    keydir, repo = secrets_layout(secrets)
    pki = tmp_path / "pki"
    pki.mkdir(mode=0o700)
    tool = load_tool("generate_secrets_pki")
    try:
        # a deployer bootstrapped before the master key was sealed: its live key is adopted
        tool.minion_key_pair(str(pki), "master")
        make_secrets(secrets, "--master-pki", pki)
        assert (secrets / "master-key/master.pem").read_bytes() == (pki / "master.pem").read_bytes()
        assert (repo / "pillar/secrets/sealed/master-key/master.pem.asc").exists()
        # a master that made itself a new key (salt-master started first): refused
        (pki / "master.pem").unlink()
        (pki / "master.pub").unlink()
        tool.minion_key_pair(str(pki), "master")
        proc = make_secrets(secrets, "--master-pki", pki, check=False)
        assert proc.returncode == 1 and "is not the cluster's master key" in proc.stderr
    finally:
        stop_gpg_agents([keydir])


# --- adding a secret ---------------------------------------------------------------------------


def test_adding_a_secret_is_one_line_and_anyone_can_seal_one(made, tmp_path, capsys):
    secrets = tmp_path / "cluster-secrets"
    keydir, repo = secrets_layout(secrets)
    tool = load_tool("generate_secrets_added")
    tool.SECRETS["grafana.password"] = lambda: "s3cret-value"  # the one line
    anyone = tmp_path / "anyones-gnupg"
    anyone.mkdir(mode=0o700)
    try:
        assert tool.main(["generate-secrets", str(secrets), "--repo", str(repo), "--gpg-keydir", str(keydir)]) == 0
        assert "grafana.password" in capsys.readouterr().out.splitlines()[-1]  # sealed
        sealed = repo / "pillar/secrets/sealed"
        assert gpg(keydir, "--decrypt", sealed / "grafana.password.asc").stdout == b"s3cret-value\n"
        # the README's command, with the public key in the repository and nothing else
        gpg(anyone, "--armor", "--encrypt", "--recipient-file", repo / "pillar/secrets/deployer.pub.asc",
            "--output", sealed / "api.token.asc", data=b"from-a-contributor\n")
        assert gpg(keydir, "--decrypt", sealed / "api.token.asc").stdout == b"from-a-contributor\n"
    finally:
        stop_gpg_agents([keydir, anyone])

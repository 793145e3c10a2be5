"""The deployer's backup and restore (issue 14): `salt-run cluster.backup` (the runner function,
loaded from _runners/cluster.py) writes the archive with the real gpg, and bootstrap/restore-backup
(run as the admin runs it) puts the files back under a scratch root. The only stub: the runner's
call to the lanservices minions for their lease databases (the lab test reads the real ones)."""

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from tests.conftest import INVENTORY, REPO, STATE_TREE, load_by_path

RESTORE = REPO / "bootstrap" / "restore-backup"
LEASES = "lease 192.168.10.201 {\n  binding state active;\n}\n"
DEPLOYER = "psi"  # the deployer of the project inventory


@pytest.fixture
def deployer(tmp_path, monkeypatch):
    """A deployer's state under tmp_path/live (master keys, secrets, GPG home with an agent
    socket) and the runner pointed at it."""
    live = tmp_path / "live"
    pki, secrets, gpg = live / "pki" / "master", live / "cluster-secrets", live / "gpgkeys"
    records = live / "cache" / "cluster" / "provisioned"
    for path, text, mode in [
        (pki / "master.pem", "-----BEGIN RSA PRIVATE KEY-----\nmaster\n", 0o400),
        (pki / "master.pub", "-----BEGIN PUBLIC KEY-----\nmaster\n", 0o644),
        (pki / "minions" / "alpha", "-----BEGIN PUBLIC KEY-----\nalpha\n", 0o644),
        (secrets / "tsig.key", "c2VjcmV0LXRzaWcta2V5LXZhbHVl\n", 0o600),
        (secrets / "ssh" / "ca_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nca\n", 0o600),
        (secrets / "minion-keys" / "alpha.pem", "-----BEGIN RSA PRIVATE KEY-----\nalpha\n", 0o600),
        (gpg / "private-keys-v1.d" / "ABCD.key", "(private-key gpg)\n", 0o600),
        # the master's provisioned records (salt-run cluster.mark_provisioned writes them)
        (records / "alpha", '{"time": "2026-12-01T10:00:00+00:00"}', 0o644),
        (records / DEPLOYER, '{"time": "2026-12-01T09:00:00+00:00"}', 0o644),
    ]:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)
        path.chmod(mode)
    agent = socket.socket(socket.AF_UNIX)
    agent.bind(str(gpg / "S.gpg-agent"))  # a live keyring has sockets: never archived
    runner = load_by_path("cluster_runner_backup", REPO / "_runners" / "cluster.py")
    runner.__opts__ = {"cluster_inventory": str(INVENTORY), "file_roots": {"base": [str(STATE_TREE)]},
                       "pki_dir": str(pki), "cluster_secrets_dir": str(secrets), "gpg_keydir": str(gpg),
                       "cachedir": str(live / "cache"),
                       "log_file": str(tmp_path / "master.log")}
    runner.__context__ = {}
    calls = []

    def fake_call(tgt, fun, arg=(), timeout=30, tgt_type="glob"):
        calls.append((tgt, fun, list(arg)))
        return {"alpha": LEASES, "beta": LEASES.replace("201", "202")}

    monkeypatch.setattr(runner, "_call", fake_call)
    runner.calls = calls
    yield runner, live
    agent.close()


def _restore(archive, passphrase, root, *extra):
    return subprocess.run([sys.executable, str(RESTORE), str(archive), "--passphrase-file", str(passphrase),
                           "--root", str(root), *extra], capture_output=True, text=True, timeout=120, check=False)


def _tree(root):
    """{relative path: (bytes, mode)} of the regular files under root."""
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            if os.path.isfile(path):
                out[os.path.relpath(path, root)] = (open(path, "rb").read(), stat.S_IMODE(os.stat(path).st_mode))
    return out


def test_backup_then_restore_gives_back_every_file_with_its_mode(deployer, tmp_path):
    runner, live = deployer
    archive = tmp_path / "deployer.tar.gpg"
    ret = runner.backup(str(archive))
    # 8 files (not the deployer's own provisioned record) and the passphrase it made
    assert ret["archive"] == str(archive) and ret["files"] == 9, ret
    assert ret["dhcp_leases"] == ["alpha", "beta"]
    assert [c[1:] for c in runner.calls] == [("file.read", ["/var/lib/dhcp/dhcpd.leases"])]
    assert sorted(runner.calls[0][0]) == ["alpha", "beta"]  # the lanservices pair, by ID
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    blob = archive.read_bytes()
    assert b"c2VjcmV0LXRzaWcta2V5LXZhbHVl" not in blob and b"PRIVATE KEY" not in blob  # encrypted
    passphrase = live / "cluster-secrets" / "backup.passphrase"  # made once, root-only
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600 and ret["passphrase_file"] == str(passphrase)
    first = passphrase.read_text()

    root = tmp_path / "fresh-card"
    proc = _restore(archive, passphrase, root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("restored 9 file(s), 0 already in place"), proc.stdout
    restored = _tree(root / str(live).lstrip("/"))
    record = f"cache/cluster/provisioned/{DEPLOYER}"
    # content and mode of every file; the agent socket is not there
    assert restored == {path: v for path, v in _tree(live).items() if path != record}
    assert "gpgkeys/S.gpg-agent" not in restored
    # the other nodes' records are back (a re-flashed card is rebuilt), not the deployer's own:
    # its restored minion's first start must not send it to orch.rebuild
    assert json.loads(restored["cache/cluster/provisioned/alpha"][0]) == {"time": "2026-12-01T10:00:00+00:00"}
    assert record not in restored
    leases = root / "var" / "backups" / "cluster" / "dhcp"
    assert (leases / "alpha.leases").read_text() == LEASES
    # a second run changes nothing, and a second backup reuses the passphrase
    again = _restore(archive, passphrase, root)
    assert again.returncode == 0 and again.stdout.startswith("restored 0 file(s), 9 already in place"), again
    runner.backup(str(tmp_path / "second.tar.gpg"))
    assert passphrase.read_text() == first


def test_the_wrong_passphrase_restores_nothing(deployer, tmp_path):
    runner, _ = deployer
    archive = tmp_path / "deployer.tar.gpg"
    runner.backup(str(archive))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    root = tmp_path / "card"
    proc = _restore(archive, wrong, root)
    assert proc.returncode == 1 and "cannot decrypt" in proc.stderr, proc
    assert not root.exists()


def test_a_deployer_that_made_other_keys_is_not_overwritten(deployer, tmp_path):
    runner, live = deployer
    archive = tmp_path / "deployer.tar.gpg"
    runner.backup(str(archive))
    root = tmp_path / "card"
    newer = root / str(live).lstrip("/") / "pki" / "master" / "master.pem"
    newer.parent.mkdir(parents=True)
    newer.write_text("a key made since\n")
    proc = _restore(archive, live / "cluster-secrets" / "backup.passphrase", root)
    assert proc.returncode == 1 and "exist with other content, nothing restored" in proc.stderr, proc
    assert str(newer) in proc.stderr
    assert newer.read_text() == "a key made since\n"
    assert _tree(root) == {os.path.relpath(newer, root): (b"a key made since\n", stat.S_IMODE(newer.stat().st_mode))}


def test_a_tampered_archive_is_refused(deployer, tmp_path):
    """An archive whose manifest does not match its members (re-encrypted with the right
    passphrase, so only the checks can catch it)."""
    runner, live = deployer
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    archive = tmp_path / "deployer.tar.gpg"
    runner.backup(str(archive), passphrase_file=str(passphrase))
    assert not (live / "cluster-secrets" / "backup.passphrase").exists()  # the admin's file was used
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home), "--pinentry-mode", "loopback",
           "--passphrase-file", str(passphrase)]
    plain = subprocess.run([*gpg, "--decrypt", str(archive)], capture_output=True, check=True).stdout
    work = tmp_path / "x"
    work.mkdir()
    subprocess.run(["tar", "-xzf", "-", "-C", str(work)], input=plain, check=True)
    key = work / "files" / str(live / "pki" / "master" / "master.pem").lstrip("/")
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nmallory\n")
    tampered = subprocess.run(["tar", "-czf", "-", "-C", str(work), "."], capture_output=True, check=True).stdout
    bad = tmp_path / "bad.tar.gpg"
    subprocess.run([*gpg, "--symmetric", "--output", str(bad)], input=tampered, check=True)
    proc = _restore(bad, passphrase, tmp_path / "card")
    assert proc.returncode == 1, proc
    assert "checksum mismatch" in proc.stderr or "unexpected member" in proc.stderr, proc.stderr
    assert not (tmp_path / "card").exists()
    manifest = json.loads((work / "MANIFEST.json").read_text())
    assert manifest["deployer"] == "psi" and len(manifest["files"]) == 8  # 7, and alpha's provisioned record

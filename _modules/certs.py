"""
Is the certificate a node holds still the one the cluster's CA would give it?

salt/tls and salt/sshd/hostcert.sls ask the CA minion (the deployer) for each node's
certificate by remote signing. Salt's ``x509.certificate_managed`` and
``ssh_pki.certificate_managed`` ask the CA for its policy on every run, even when the
certificate on disk is fine: a peer publish through the master and a job on the deployer per
node and highstate (about 0.7 s each on the lab, all nodes at once on one deployer). These
checks, used as the states' ``unless``, answer locally: the certificate is for this node's key,
signed by the cluster's CA, for exactly the names the CA's policy pins, and not due for renewal.
Any difference (a new key, a new CA, a changed name or address in the inventory, a renewal
date reached, an unreadable file) answers False and the state asks the CA as before.

A change of the policy's other settings (lifetime, key usage) is picked up at the next renewal.
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "certs"

# what reading a missing, foreign or corrupt file may raise through Salt's helpers (a certificate
# valid "forever" overflows their date conversion)
_UNREADABLE = (CommandExecutionError, SaltInvocationError, ValueError, TypeError, OSError, KeyError, OverflowError)


def __virtual__():
    try:
        import cryptography  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return False, "certs: needs the python cryptography package (as Salt's x509_v2 and ssh_pki do)"
    return __virtualname__


def _differs(cert, what, got, want):
    log.debug("certs: %s: %s is %r, the CA's policy says %r", cert, what, got, want)
    return False


def tls_current(certificate, private_key, ca_cert, cn, names, days_remaining=0):
    """
    True when the X.509 certificate ``certificate`` is for the key ``private_key``, signed by
    ``ca_cert`` (PEM or path), with subject CN ``cn`` and exactly the subjectAltName entries
    ``names`` (``DNS:name``, ``IP:address``), and more than ``days_remaining`` days left.

    CLI Example:

    .. code-block:: bash

        salt gamma certs.tls_current /etc/ssl/cluster/node.crt /etc/ssl/cluster/node.key \\
            /usr/local/share/ca-certificates/cluster-ca.crt gamma.b3rry.clust0r \\
            '[DNS:gamma, DNS:gamma.b3rry.clust0r, IP:10.77.0.23]' days_remaining=20
    """
    try:
        info = __salt__["x509.read_certificate"](certificate)
        sans = info.get("extensions", {}).get("subjectAltName", {}).get("value", [])
        if info.get("subject", {}).get("CN") != cn:
            return _differs(certificate, "the CN", info.get("subject", {}).get("CN"), cn)
        if sorted(sans) != sorted(names):
            return _differs(certificate, "subjectAltName", sans, names)
        if not __salt__["x509.verify_private_key"](private_key, certificate):
            return _differs(certificate, "the key", "another key", private_key)
        if not __salt__["x509.verify_signature"](certificate, ca_cert):
            return _differs(certificate, "the signer", "another CA", "the cluster's")
        return not __salt__["x509.will_expire"](certificate, days_remaining)["will_expire"]
    except _UNREADABLE as exc:
        log.debug("certs: %s cannot be checked locally (%s): the CA decides", certificate, exc)
        return False


def ssh_host_current(certificate, private_key, ca_pub, principals, ttl_remaining=0):
    """
    True when the OpenSSH host certificate ``certificate`` is for the host key
    ``private_key``, signed by the CA public key ``ca_pub`` (OpenSSH text or path), valid for
    exactly ``principals`` and not expiring within ``ttl_remaining`` (seconds or ``30d``).

    CLI Example:

    .. code-block:: bash

        salt gamma certs.ssh_host_current /etc/ssh/ssh_host_ed25519_key-cert.pub \\
            /etc/ssh/ssh_host_ed25519_key "$(cat ca.pub)" '[gamma, gamma.b3rry.clust0r, 10.77.0.23]' \\
            ttl_remaining=30d
    """
    try:
        info = __salt__["ssh_pki.read_certificate"](certificate)
        if info.get("cert_type") != "host":
            return _differs(certificate, "the type", info.get("cert_type"), "host")
        got = info.get("valid_principals")
        if not isinstance(got, list) or sorted(got) != sorted(principals):
            return _differs(certificate, "the principals", got, principals)
        if not __salt__["ssh_pki.verify_private_key"](private_key, certificate):
            return _differs(certificate, "the key", "another key", private_key)
        if not __salt__["ssh_pki.verify_signature"](certificate, ca_pub):
            return _differs(certificate, "the signer", "another CA", "the cluster's")
        return not __salt__["ssh_pki.expires"](certificate, ttl_remaining)
    except _UNREADABLE as exc:
        log.debug("certs: %s cannot be checked locally (%s): the CA decides", certificate, exc)
        return False

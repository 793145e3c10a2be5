"""
Health of the BusyBox httpd serving the cluster page (salt/httpd): is the service up, and
does it answer with the page? Used by the cluster status runner.

CLI Example:

.. code-block:: bash

    salt -G roles:lanservices bbhttpd.status
"""

import http.client
import logging
import shlex

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "bbhttpd"

DEFAULTS_FILE = "/etc/default/bbhttpd"
SERVICE = "bbhttpd"
# the inventory page salt/httpd generates (the live status page at / is salt/statuspage's)
PAGE = "/inventory.html"
# every page salt/httpd generates carries this marker in its title
MARKER = "rpi_cluster"


def __virtual__():
    return __virtualname__


def _port(defaults_file):
    try:
        with open(defaults_file, encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key == "BBHTTPD_PORT":
                    return int(shlex.split(value)[0])
    except (OSError, ValueError, IndexError) as exc:
        raise CommandExecutionError(
            f"cannot read BBHTTPD_PORT from {defaults_file}: {exc} (is the httpd state applied?)"
        ) from exc
    raise CommandExecutionError(f"no BBHTTPD_PORT in {defaults_file}")


def _running(service):
    try:
        return bool(__salt__["service.status"](service))
    except (CommandExecutionError, KeyError) as exc:
        log.debug("service.status %s: %s", service, exc)
        return None


def get(path="/", host="127.0.0.1", port=None, defaults_file=DEFAULTS_FILE, timeout=3.0):
    """
    GET ``path`` from the page server: ``{"status": HTTP status, "body": text}``.

    CLI Example:

    .. code-block:: bash

        salt-call bbhttpd.get /cluster.json
    """
    if port is None:
        port = _port(defaults_file)
    conn = http.client.HTTPConnection(host, int(port), timeout=float(timeout))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return {"status": resp.status, "body": resp.read().decode("utf-8", errors="replace")}
    except OSError as exc:
        raise CommandExecutionError(f"no HTTP answer from {host}:{port}{path}: {exc}") from exc
    finally:
        conn.close()


def status(host="127.0.0.1", port=None, defaults_file=DEFAULTS_FILE, timeout=3.0):
    """
    Page server health: ``running`` (the bbhttpd service), ``port``, ``http_status`` of
    the inventory page and ``serves_page`` (the answer is that page), ``error`` if it did not answer.

    CLI Example:

    .. code-block:: bash

        salt-call bbhttpd.status
    """
    if port is None:
        port = _port(defaults_file)
    out = {"running": _running(SERVICE), "port": int(port), "http_status": None,
           "serves_page": False, "error": None}
    try:
        resp = get(PAGE, host=host, port=port, timeout=timeout)
    except CommandExecutionError as exc:
        out["error"] = str(exc)
        return out
    out["http_status"] = resp["status"]
    out["serves_page"] = resp["status"] == 200 and MARKER in resp["body"]
    return out

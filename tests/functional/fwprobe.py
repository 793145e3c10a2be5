"""Small listeners and probes for the firewall's functional test, run inside namespaces.

    python3 fwprobe.py listen tcp:22,tcp:3632,udp:8472   TCP accept (and close), UDP echo
    python3 fwprobe.py probe 192.168.10.21 1.0 tcp:22,udp:8472
        prints {"tcp:22": "open" | "timeout" | "refused", ...} (probes in parallel, bounded)
    python3 fwprobe.py tftp 192.168.10.6 1.0
        a read request to port 69 and the acknowledgement of the first block: "open"/"timeout"
    python3 fwprobe.py broadcast
        udp 67 from 0.0.0.0 to the broadcast address (a DHCP client without an address); the
        listener's log says whether it came in
"""

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def _listen_tcp(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        conn.close()


def _listen_udp(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    srv.bind(("0.0.0.0", port))
    while True:
        data, peer = srv.recvfrom(2048)
        print(f"received udp:{port} from {peer[0]}", flush=True)
        if port == 69:  # TFTP: the data block from a new port; its ACK must come back there
            threading.Thread(target=_tftp_transfer, args=(peer,), daemon=True).start()
        elif peer[0] != "0.0.0.0":  # (no route to answer a client without an address: the log says it came)
            srv.sendto(data, peer)


def _tftp_transfer(peer):
    data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data.bind(("0.0.0.0", 0))
    data.settimeout(3)
    data.sendto(b"\x00\x03\x00\x01hello", peer)  # DATA block 1
    try:
        ack, _ = data.recvfrom(64)
        if ack[:4] == b"\x00\x04\x00\x01":
            data.sendto(b"\x00\x03\x00\x02", peer)  # DATA block 2 (empty: the end): acknowledged
    except OSError:
        pass


def listen(specs):
    for spec in specs.split(","):
        proto, port = spec.split(":")
        target = _listen_tcp if proto == "tcp" else _listen_udp
        threading.Thread(target=target, args=(int(port),), daemon=True).start()
    print("listening", specs, flush=True)
    threading.Event().wait()


def _probe(host, timeout, spec):
    proto, port = spec.split(":")
    try:
        if proto == "tcp":
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return "open"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(timeout)
        sock.connect((host, int(port)))
        sock.send(b"ping")
        sock.recv(64)
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "timeout"


def probe(host, timeout, specs):
    specs = specs.split(",")
    with ThreadPoolExecutor(len(specs)) as pool:
        results = list(pool.map(lambda s: _probe(host, float(timeout), s), specs))
    print(json.dumps(dict(zip(specs, results, strict=True))))


def tftp(host, timeout):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(float(timeout))
    sock.sendto(b"\x00\x01pxelinux.0\x00octet\x00", (host, 69))
    try:
        block, server = sock.recvfrom(64)
        assert block[:4] == b"\x00\x03\x00\x01" and server[1] != 69
        sock.sendto(b"\x00\x04\x00\x01", server)  # ACK to the server's new port
        last, _ = sock.recvfrom(64)  # block 2 arrives only if the ACK got through
        print(json.dumps({"tftp": "open" if last[:4] == b"\x00\x03\x00\x02" else "bad"}))
    except OSError:
        print(json.dumps({"tftp": "timeout"}))


def broadcast():
    """A DHCP client's first packet: from 0.0.0.0:68 (no address on eth0) to 255.255.255.255:67."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.bind(("0.0.0.0", 68))
    sock.sendto(b"discover", ("255.255.255.255", 67))
    print(json.dumps({"udp:67": "sent"}))


if __name__ == "__main__":
    {"listen": listen, "probe": probe, "tftp": tftp, "broadcast": broadcast}[sys.argv[1]](*sys.argv[2:])

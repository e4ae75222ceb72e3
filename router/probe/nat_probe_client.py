#!/usr/bin/env python3
"""NAT probe client: run behind the NAT under test; prints one JSON object of what it observed.

  nat_probe_client.py PRIMARY_IP ALTERNATE_IP PORT1 PORT2

Mapping (RFC 5780 section 4.3): one local port sends to primary, altAddress and altBoth; the
server reports the address:port it saw for each. Filtering (section 4.4): a fresh local port
sends only to primary and asks the server to answer also from altPort, altAddress and altBoth;
what arrives is recorded. Over TCP the same with connections: the local port is shared
(SO_REUSEPORT) by a listener, as libp2p does, so the server's connections back can be accepted.
Classification is not done here (cluster/nat.py does it, from this output).
"""
import json
import socket
import sys
import time

MAPPING_TARGETS = ("primary", "altAddress", "altBoth")
FILTER_FROM = ("altPort", "altAddress", "altBoth")
UDP_WAIT = 2.0   # after the first answer, how long to collect the others
TCP_WAIT = 3.0
TRIES = 15       # UDP retransmissions, 0.3 s apart


def reuse(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def udp_ask(sock, target, request):
    """Send until the answer from `target` comes; returns it (or None)."""
    sock.settimeout(0.3)
    for _ in range(TRIES):
        sock.sendto(json.dumps(request).encode(), target)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                break
            msg = json.loads(data)
            if msg.get("id") == request["id"]:
                return msg
    return None


def udp(eps):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    observed = {}
    for n, name in enumerate(MAPPING_TARGETS):
        msg = udp_ask(s, eps[name], {"op": "map", "id": n})
        observed[name] = msg["observed"] if msg else None
    mapping = {"localPort": s.getsockname()[1], "observed": observed}
    rtts = []
    for n in range(5):  # the latency model: through this NAT to a host without delay
        t0 = time.monotonic()
        if udp_ask(s, eps["primary"], {"op": "map", "id": 10 + n}):
            rtts.append((time.monotonic() - t0) * 1000)
    s.close()

    f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    f.bind(("0.0.0.0", 0))
    request = {"op": "filter", "id": 100, "from": list(FILTER_FROM)}
    first = udp_ask(f, eps["primary"], request)
    received = set()
    if first:
        received.add(first["via"])
        f.settimeout(0.2)
        deadline = time.monotonic() + UDP_WAIT
        while time.monotonic() < deadline:
            try:
                data, _ = f.recvfrom(2048)
            except TimeoutError:
                continue
            msg = json.loads(data)
            if msg.get("id") == 100:
                received.add(msg["via"])
    filtering = {"localPort": f.getsockname()[1], "observed": first["observed"] if first else None,
                 "received": sorted(received)}
    f.close()
    return {"mapping": mapping, "filtering": filtering, "rttMs": round(min(rtts), 1) if rtts else None}


def tcp_ask(local_port, target, request):
    """One connection from `local_port` (0: any); returns (socket, first answer or None)."""
    s = reuse(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    s.bind(("0.0.0.0", local_port))
    s.settimeout(6)
    try:
        s.connect(target)
        s.sendall((json.dumps(request) + "\n").encode())
        line = s.makefile("rb").readline()
        return s, json.loads(line)
    except (OSError, ValueError):
        return s, None


def tcp(eps):
    open_socks = []
    observed = {}
    port = 0
    for n, name in enumerate(MAPPING_TARGETS):
        s, msg = tcp_ask(port, eps[name], {"op": "map", "id": n})
        port = port or s.getsockname()[1]
        open_socks.append(s)
        observed[name] = msg["observed"] if msg else None
    mapping = {"localPort": port, "observed": observed}
    for s in open_socks:
        s.close()

    listener = reuse(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    local = listener.getsockname()[1]
    s, first = tcp_ask(local, eps["primary"], {"op": "filter", "id": 100, "from": list(FILTER_FROM)})
    received = set()
    if first:
        received.add(first["via"])
        listener.settimeout(0.2)
        deadline = time.monotonic() + TCP_WAIT
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    msg = json.loads(conn.makefile("rb").readline())
                except (OSError, ValueError):
                    continue
                if msg.get("id") == 100:
                    received.add(msg["via"])
    s.close()
    listener.close()
    filtering = {"localPort": local, "observed": first["observed"] if first else None,
                 "received": sorted(received)}
    return {"mapping": mapping, "filtering": filtering}


def main():
    primary, alternate, port1, port2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    eps = {"primary": (primary, port1), "altPort": (primary, port2),
           "altAddress": (alternate, port1), "altBoth": (alternate, port2)}
    print(json.dumps({"udp": udp(eps), "tcp": tcp(eps)}), flush=True)


if __name__ == "__main__":
    main()

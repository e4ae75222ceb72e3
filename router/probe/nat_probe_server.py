#!/usr/bin/env python3
"""NAT probe server (RFC 5780 in spirit): four endpoints on the simulated internet, two addresses
x two ports, over UDP and TCP. It tells a client the address:port it saw (its NAT's mapping) and,
when asked, answers from the other endpoints too, so the client learns what its NAT filters.

  nat_probe_server.py PRIMARY_IP ALTERNATE_IP PORT1 PORT2

Requests are one JSON object (a UDP datagram, or a line on a TCP connection):
  {"op": "map", "id": N}                    -> {"id": N, "observed": "ip:port", "via": NAME}
  {"op": "filter", "id": N, "from": [NAME]} -> that reply, then one message from each named endpoint
Endpoint names: primary (PRIMARY:PORT1), altPort (PRIMARY:PORT2), altAddress (ALTERNATE:PORT1),
altBoth (ALTERNATE:PORT2). The alternate address is added to the interface holding the primary
one (needs NET_ADMIN). TCP answers from another endpoint are new connections from that endpoint.
"""
import json
import selectors
import socket
import subprocess
import sys
import threading

CONNECT_TIMEOUT = 4.0


def endpoints(primary, alternate, port1, port2):
    return {"primary": (primary, port1), "altPort": (primary, port2),
            "altAddress": (alternate, port1), "altBoth": (alternate, port2)}


def add_alternate(primary, alternate):
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    if f" {alternate}/" in out:
        return
    for line in out.splitlines():
        fields = line.split()
        if fields[3].startswith(primary + "/"):
            prefix = fields[3].split("/")[1]
            device = fields[1].split("@")[0]
            subprocess.run(["ip", "addr", "add", f"{alternate}/{prefix}", "dev", device], check=True)
            return
    sys.exit(f"nat-probe server: no interface holds {primary}")


def reuse(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def serve_udp(eps):
    socks = {}
    sel = selectors.DefaultSelector()
    for name, ep in eps.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(ep)
        socks[name] = s
        sel.register(s, selectors.EVENT_READ, name)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(2048)
            try:
                req = json.loads(data)
            except ValueError:
                continue
            observed = f"{peer[0]}:{peer[1]}"
            reply = {"id": req.get("id"), "observed": observed}
            key.fileobj.sendto(json.dumps({**reply, "via": key.data}).encode(), peer)
            if req.get("op") == "filter":
                for name in req.get("from", []):
                    if name in socks:
                        socks[name].sendto(json.dumps({**reply, "via": name}).encode(), peer)


def connect_back(eps, name, peer, reply):
    s = reuse(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.bind(eps[name])
        s.connect(peer)
        s.sendall((json.dumps({**reply, "via": name}) + "\n").encode())
    except OSError:
        pass  # filtered: the client's NAT dropped our SYN, which is the answer
    finally:
        s.close()


def handle_tcp(eps, name, conn, peer):
    with conn:
        conn.settimeout(5)
        try:
            line = conn.makefile("rb").readline()
            req = json.loads(line)
        except (OSError, ValueError):
            return
        reply = {"id": req.get("id"), "observed": f"{peer[0]}:{peer[1]}"}
        try:
            conn.sendall((json.dumps({**reply, "via": name}) + "\n").encode())
        except OSError:
            return
        if req.get("op") == "filter":
            for other in req.get("from", []):
                if other in eps:
                    threading.Thread(target=connect_back, args=(eps, other, peer, reply), daemon=True).start()
            try:  # keep the client's connection (and its NAT mapping) until it hangs up
                conn.recv(1)
            except OSError:
                pass


def serve_tcp(eps, name):
    s = reuse(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    s.bind(eps[name])
    s.listen(64)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=handle_tcp, args=(eps, name, conn, peer), daemon=True).start()


def main():
    primary, alternate, port1, port2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    add_alternate(primary, alternate)
    eps = endpoints(primary, alternate, port1, port2)
    for name in eps:
        threading.Thread(target=serve_tcp, args=(eps, name), daemon=True).start()
    print(f"nat-probe server: {' '.join(f'{n}={a}:{p}' for n, (a, p) in eps.items())} (udp, tcp)", flush=True)
    serve_udp(eps)


if __name__ == "__main__":
    main()

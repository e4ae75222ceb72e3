#!/usr/bin/env python3
"""UDP hole punch + RTT probe for the router hand test.
  udp-punch.py echo  LPORT PEER_IP PEER_PORT          punch towards the peer, then echo forever
  udp-punch.py probe LPORT PEER_IP PEER_PORT [N]      punch, then N timed round trips; prints ms
  udp-punch.py burst-recv PORT SECONDS                count packets, check their order
  udp-punch.py burst-send N IP PORT                   send N numbered packets as fast as possible"""
import socket
import statistics
import sys
import time

if sys.argv[1] == "burst-recv":
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    r.bind(("0.0.0.0", int(sys.argv[2])))
    r.settimeout(float(sys.argv[3]))
    got, out_of_order, last = 0, 0, -1
    try:
        while True:
            seq = int(r.recv(64).split(b" ")[0])
            got += 1
            out_of_order += seq < last
            last = max(last, seq)
    except TimeoutError:
        pass
    print(f"burst: received {got}, out of order {out_of_order}")
    sys.exit(0)
if sys.argv[1] == "burst-send":
    n = int(sys.argv[2])
    w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    for i in range(n):
        w.sendto(b"%d " % i + b"x" * 100, (sys.argv[3], int(sys.argv[4])))
    print(f"burst: sent {n} in {(time.monotonic() - t0) * 1000:.0f} ms")
    sys.exit(0)
mode, lport, peer, pport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
n = int(sys.argv[5]) if len(sys.argv) > 5 else 10
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", lport))
s.settimeout(0.2)
# punch: send until something comes back (the peer does the same)
deadline = time.time() + float(__import__("os").environ.get("PUNCH_TIMEOUT", "20"))
while True:
    s.sendto(b"punch", (peer, pport))
    try:
        data, addr = s.recvfrom(2048)
        print(f"{mode}: got {data[:10]!r} from {addr[0]}:{addr[1]}", file=sys.stderr)
        break
    except TimeoutError:
        if time.time() > deadline:
            sys.exit(f"{mode}: punch failed")
s.sendto(b"punch", (peer, pport))
if mode == "echo":
    s.settimeout(None)
    while True:
        data, addr = s.recvfrom(2048)
        if data.startswith(b"rtt"):
            s.sendto(data, addr)
else:
    time.sleep(0.5)
    s.settimeout(0.05)
    try:  # drain leftover punch packets
        while True:
            s.recvfrom(2048)
    except TimeoutError:
        pass
    s.settimeout(2)
    rtts = []
    for i in range(n):
        msg = f"rtt{i}".encode()
        t0 = time.monotonic()
        s.sendto(msg, (peer, pport))
        while True:
            data, _ = s.recvfrom(2048)
            if data == msg:
                break
        rtts.append((time.monotonic() - t0) * 1000)
        time.sleep(0.2)
    print(" ".join(f"{r:.2f}" for r in rtts))
    print(f"udp rtt ms: mean {statistics.mean(rtts):.2f} min {min(rtts):.2f} max {max(rtts):.2f} "
          f"stdev {statistics.stdev(rtts):.2f} (n={n})")

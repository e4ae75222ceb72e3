#!/bin/bash
# Hand test of the holepunch router: latency model, NAT port preservation, PUBLIC_ALLOW, failure
# handling. Needs the images holepunch-base:bookworm and holepunch-router. Creates and removes
# the compose project hpdev (label holepunch.owner=dev); the "internet" is an internal network.
set -euo pipefail
cd "$(dirname "$0")"
P=hpdev
dc() { docker-compose -p $P -f compose.yml "$@"; }
stats() { python3 -c '
import re, statistics as st, sys
v = [float(x) for x in re.findall(r"time=([0-9.]+)", sys.stdin.read())]
print(f"n={len(v)} mean {st.mean(v):.1f} min {min(v):.1f} max {max(v):.1f} stdev {st.stdev(v):.1f} ms   [" + " ".join(f"{x:.1f}" for x in v) + "]")'; }
ping10() { docker exec "$1" ping -c 10 -i 0.3 "$2" | stats; }
cleanup() { dc down -v -t 3 >/dev/null 2>&1 || true; }
trap cleanup EXIT

cleanup
t0=$(date +%s.%N); R2_ALLOW= dc up -d >/dev/null 2>&1; t1=$(date +%s.%N)
echo "up (routers healthy, clients started): $(echo "scale=1; ($t1-$t0)/1" | bc) s"
for r in router1 router2; do dc logs $r | grep -E 'public|nfq-delay:' | sed 's/^.*| //'; done

echo "== client1 -> public host (11.11.0.100, 25 ms egress delay): expect ~125 ms"
ping10 ${P}_client1_1 11.11.0.100
echo "== client2 -> public host"
ping10 ${P}_client2_1 11.11.0.100
echo "== public host -> router1 public address (NEW from public side: must be dropped)"
docker exec ${P}_pubhost_1 ping -c 2 -W 1 11.11.0.10 >/dev/null 2>&1 && echo "UNEXPECTED: answered" || echo "dropped (ok)"

echo "== client1 -> client2 through both NATs (temporary DNAT of ICMP on router2): expect ~200 ms"
R2=${P}_router2_1
PUB2=$(docker exec $R2 ip -o -4 addr show | awk '$4 ~ /^11\.11\./ {print $2}')
LAN2=$(docker exec $R2 ip -o -4 addr show | awk '$4 ~ /^10\.201\.2\./ {print $2}')
docker exec $R2 iptables -t nat -I PREROUTING 1 -i "$PUB2" -s 11.11.0.10 -p icmp -j DNAT --to-destination 10.201.2.10
docker exec $R2 iptables -I HP_FWD 1 -i "$PUB2" -o "$LAN2" -s 11.11.0.10 -d 10.201.2.10 -p icmp -j ACCEPT
ping10 ${P}_client1_1 11.11.0.20
docker exec $R2 iptables -t nat -D PREROUTING -i "$PUB2" -s 11.11.0.10 -p icmp -j DNAT --to-destination 10.201.2.10
docker exec $R2 iptables -D HP_FWD -i "$PUB2" -o "$LAN2" -s 11.11.0.10 -d 10.201.2.10 -p icmp -j ACCEPT

echo "== UDP hole punch client1:4001 <-> client2:5002 (no extra rules), then 10 timed round trips"
docker exec -d ${P}_client2_1 python3 /udp-punch.py echo 5002 11.11.0.10 4001
docker exec ${P}_client1_1 python3 /udp-punch.py probe 4001 11.11.0.20 5002 10
echo "-- conntrack on router1 / router2 (source ports kept by MASQUERADE):"
docker exec ${P}_router1_1 conntrack -L -p udp 2>/dev/null
docker exec ${P}_router2_1 conntrack -L -p udp 2>/dev/null

echo "== burst: 5000 UDP packets client1 -> public host as fast as the sender can"
docker exec -d ${P}_pubhost_1 sh -c 'python3 /udp-punch.py burst-recv 6000 2 > /tmp/burst.txt'
sleep 0.5
docker exec ${P}_client1_1 python3 /udp-punch.py burst-send 5000 11.11.0.100 6000
sleep 3; docker exec ${P}_pubhost_1 cat /tmp/burst.txt
echo "-- nfq-delay's own lateness (release time - due time) so far:"
for c in router1 router2 pubhost; do docker exec ${P}_${c}_1 pkill -USR1 -x nfq-delay; done; sleep 0.3
for c in router1 router2 pubhost; do dc logs $c | { grep SIGUSR1 || true; } | tail -1 | sed "s/^.*| /$c: /"; done

echo "== PUBLIC_ALLOW=11.11.0.100 on router2: relay-like host reachable, direct path impossible"
docker exec ${P}_client2_1 pkill -f udp-punch.py || true
R2_ALLOW=11.11.0.100 dc up -d router2 >/dev/null 2>&1
until docker inspect -f '{{.State.Health.Status}}' $R2 | grep -q healthy; do sleep 0.2; done
ping10 ${P}_client2_1 11.11.0.100
docker exec -d ${P}_client2_1 env PUNCH_TIMEOUT=8 python3 /udp-punch.py echo 5003 11.11.0.10 4004
if docker exec ${P}_client1_1 env PUNCH_TIMEOUT=8 python3 /udp-punch.py probe 4004 11.11.0.20 5003 3; then
    echo "UNEXPECTED: punch succeeded through PUBLIC_ALLOW"; exit 1
else echo "punch failed as it must (ok)"; fi

echo "== nfq-delay killed inside router1 -> router exits non-zero"
docker exec ${P}_router1_1 pkill -KILL nfq-delay
sleep 1
docker inspect -f 'router1: running={{.State.Running}} exit={{.State.ExitCode}}' ${P}_router1_1
dc logs router1 | tail -1 | sed 's/^.*| //'

echo "== docker stop (SIGTERM) of router2"
t0=$(date +%s.%N); docker stop -t 10 $R2 >/dev/null; t1=$(date +%s.%N)
docker inspect -f "router2: exit={{.State.ExitCode}} after $(echo "scale=2; ($t1-$t0)/1" | bc) s" $R2
t0=$(date +%s.%N); dc down -v -t 3 >/dev/null 2>&1; t1=$(date +%s.%N)
echo "down: $(echo "scale=1; ($t1-$t0)/1" | bc) s"

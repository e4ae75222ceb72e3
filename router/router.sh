#!/bin/bash
# holepunch NAT router entrypoint (see router/README.md).
#
# Env:  PUBLIC_SUBNET  CIDR of the simulated internet (required)
#       LAN_SUBNET     CIDR of this router's LAN (required)
#       DELAY_MS       delay per direction, ms (default 50; 0 = no delay)
#       PUBLIC_ALLOW   optional comma-separated public IPs: forward only to/from these on the public side
#       NFQ_QUEUE      NFQUEUE number used for the delay (default 0; each container has its own netns)
#       DELAY_MODE     auto (default: netem if the kernel has it, else nfqueue) | netem | nfqueue
# Needs: cap NET_ADMIN, sysctl net.ipv4.ip_forward=1. Creates /tmp/setup-done when ready.
set -euo pipefail

log() { echo "router: $*" >&2; }
fail() { echo "router: ERROR: $*" >&2; rm -f /tmp/setup-done; exit 1; }

rm -f /tmp/setup-done

: "${PUBLIC_SUBNET:?router: PUBLIC_SUBNET (CIDR of the public network) is required}"
: "${LAN_SUBNET:?router: LAN_SUBNET (CIDR of the LAN of this router) is required}"
DELAY_MS=${DELAY_MS:-50}
NFQ_QUEUE=${NFQ_QUEUE:-0}
DELAY_MODE=${DELAY_MODE:-auto}
PUBLIC_ALLOW=${PUBLIC_ALLOW:-}
[[ $DELAY_MS =~ ^[0-9]+$ ]] || fail "DELAY_MS must be a whole number of ms, got '$DELAY_MS'"

ip2int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    for o in "$a" "$b" "$c" "$d"; do [[ $o =~ ^[0-9]+$ && $o -le 255 ]] || return 1; done
    echo $(( (a << 24) | (b << 16) | (c << 8) | d ))
}
# in_cidr IP CIDR
in_cidr() {
    local ip net len mask
    ip=$(ip2int "$1") || return 1
    net=$(ip2int "${2%/*}") || return 1
    len=${2#*/}
    [[ $len =~ ^[0-9]+$ && $len -le 32 ]] || return 1
    mask=$(( len == 0 ? 0 : (0xFFFFFFFF << (32 - len)) & 0xFFFFFFFF ))
    (( (ip & mask) == (net & mask) ))
}
in_cidr "${PUBLIC_SUBNET%/*}" "$PUBLIC_SUBNET" || fail "bad PUBLIC_SUBNET '$PUBLIC_SUBNET'"
in_cidr "${LAN_SUBNET%/*}" "$LAN_SUBNET" || fail "bad LAN_SUBNET '$LAN_SUBNET'"

# find_if CIDR -> "ifname address" of the interface with an IPv4 address inside CIDR
find_if() {
    local ifname addr
    while read -r ifname addr; do
        ifname=${ifname%%@*}
        if in_cidr "${addr%/*}" "$1"; then echo "$ifname ${addr%/*}"; return 0; fi
    done < <(ip -o -4 addr show | awk '{print $2, $4}')
    return 1
}

# interfaces: by address, never by name or order (wait briefly in case a network attaches late)
PUB_IF= LAN_IF=
for _ in $(seq 1 50); do
    if pub=$(find_if "$PUBLIC_SUBNET") && lan=$(find_if "$LAN_SUBNET"); then
        read -r PUB_IF PUB_IP <<<"$pub"
        read -r LAN_IF LAN_IP <<<"$lan"
        break
    fi
    sleep 0.1
done
[[ -n $PUB_IF && -n $LAN_IF ]] || fail "no interface in PUBLIC_SUBNET=$PUBLIC_SUBNET and/or LAN_SUBNET=$LAN_SUBNET: $(ip -o -4 addr show | awk '{print $2, $4}' | tr '\n' ' ')"
[[ $PUB_IF != "$LAN_IF" ]] || fail "public and LAN subnets resolve to the same interface $PUB_IF"
log "public $PUB_IF $PUB_IP ($PUBLIC_SUBNET), lan $LAN_IF $LAN_IP ($LAN_SUBNET), delay ${DELAY_MS} ms"

# forwarding: given by compose `sysctls: net.ipv4.ip_forward: 1` (/proc/sys is read-only in a container)
# (with NET_ADMIN, Docker leaves /proc/sys/net writable, so the write below also works)
if [[ $(cat /proc/sys/net/ipv4/ip_forward) != 1 ]]; then
    echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null \
        || fail "net.ipv4.ip_forward is 0 and cannot be set here: add sysctl net.ipv4.ip_forward=1"
fi

# default route: Docker gave us one via whichever network came first; everything non-local is
# on the public side (an internal network: nothing leaves the machine)
ip route replace default dev "$PUB_IF" || fail "cannot set the default route (NET_ADMIN missing?)"

IPT=iptables
$IPT -w -L -n >/dev/null 2>&1 || fail "iptables does not work here (NET_ADMIN missing?)"

# our own chains (idempotent: flushed and re-hooked on every start; Docker's DNS rules in the nat
# table are left alone)
chain() { # chain TABLE NAME HOOK [insert]
    $IPT -w -t "$1" -N "$2" 2>/dev/null || $IPT -w -t "$1" -F "$2"
    $IPT -w -t "$1" -C "$3" -j "$2" 2>/dev/null || $IPT -w -t "$1" -I "$3" 1 -j "$2"
}
chain raw    HP_PRE  PREROUTING
chain filter HP_IN   INPUT
chain filter HP_FWD  FORWARD
chain nat    HP_POST POSTROUTING
$IPT -w -P FORWARD DROP

IFS=, read -r -a ALLOW <<<"${PUBLIC_ALLOW// /}"
for a in "${ALLOW[@]}"; do ip2int "$a" >/dev/null || fail "bad address '$a' in PUBLIC_ALLOW"; done

# --- filter: a NAT router with a stateful firewall ---
# INPUT: nothing new from the public side may reach the router itself. Without this, an early
# packet from the peer to our public ip:port creates (and confirms) a conntrack entry, and the
# client's own outgoing packet later gets a different source port: the punch fails.
$IPT -w -A HP_IN -i "$PUB_IF" -m conntrack --ctstate NEW,INVALID -j DROP
# FORWARD: LAN -> public allowed (to PUBLIC_ALLOW only, when set); public -> LAN only replies
$IPT -w -A HP_FWD -i "$PUB_IF" -o "$LAN_IF" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
if ((${#ALLOW[@]})); then
    for a in "${ALLOW[@]}"; do $IPT -w -A HP_FWD -i "$LAN_IF" -o "$PUB_IF" -d "$a" -j ACCEPT; done
else
    $IPT -w -A HP_FWD -i "$LAN_IF" -o "$PUB_IF" -j ACCEPT
fi
$IPT -w -A HP_FWD -j DROP
# NAT: masquerade LAN traffic behind our public address; MASQUERADE keeps source ports when it
# can (no --random), the endpoint-independent mapping hole punching needs
$IPT -w -t nat -A HP_POST -o "$PUB_IF" -s "$LAN_SUBNET" -j MASQUERADE

# --- raw PREROUTING: which packets get the delay (forwarded traffic, both directions) ---
# Everything here runs before conntrack. DROP rules come first: an NFQUEUE verdict ends this
# chain, so a rule after it would never see the packet.
Q=HP_PRE
$IPT -w -t raw -N HP_DELAY 2>/dev/null || $IPT -w -t raw -F HP_DELAY
$IPT -w -t raw -A $Q -i "$LAN_IF" -d "$LAN_SUBNET" -j RETURN                # LAN-local, to us
$IPT -w -t raw -A $Q -i "$LAN_IF" -m addrtype --dst-type BROADCAST,MULTICAST -j RETURN
$IPT -w -t raw -A $Q -i "$PUB_IF" ! -d "$PUB_IP" -j RETURN                  # not for us: not forwarded
if ((${#ALLOW[@]})); then
    for a in "${ALLOW[@]}"; do
        $IPT -w -t raw -A $Q -i "$LAN_IF" -d "$a" -j HP_DELAY
        $IPT -w -t raw -A $Q -i "$PUB_IF" -s "$a" -j HP_DELAY
    done
    $IPT -w -t raw -A $Q -i "$LAN_IF" -j DROP   # LAN -> a public host that is not allowed
    $IPT -w -t raw -A $Q -i "$PUB_IF" -j DROP   # a public host that is not allowed -> us
else
    $IPT -w -t raw -A $Q -i "$LAN_IF" -j HP_DELAY
    $IPT -w -t raw -A $Q -i "$PUB_IF" -j HP_DELAY
fi
# (packets from the public side to us that are then dropped by HP_IN are delayed first: harmless)

# --- the delay itself ---
child=
on_term() {
    log "SIGTERM, stopping"
    rm -f /tmp/setup-done
    if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
    exit 0
}
trap on_term TERM INT

mode=$DELAY_MODE
if [[ $mode == auto ]]; then
    if ((DELAY_MS == 0)); then mode=none
    elif tc qdisc replace dev lo root netem delay 0ms 2>/dev/null; then
        tc qdisc del dev lo root 2>/dev/null || true
        mode=netem
    else
        mode=nfqueue
    fi
fi
case $mode in
  none)
    log "DELAY_MS=0: no delay"
    ;;
  netem)
    # netem delays on egress: LAN egress delays public->LAN, public egress delays LAN->public
    tc qdisc replace dev "$PUB_IF" root netem delay "${DELAY_MS}ms" limit 100000 || fail "tc netem on $PUB_IF"
    tc qdisc replace dev "$LAN_IF" root netem delay "${DELAY_MS}ms" limit 100000 || fail "tc netem on $LAN_IF"
    log "delay: tc netem ${DELAY_MS} ms on $PUB_IF and $LAN_IF egress"
    ;;
  nfqueue)
    # --queue-bypass: if nfq-delay is not (yet) bound, packets pass instead of being black-holed;
    # the router exits when nfq-delay dies, so this never silently runs without the delay
    $IPT -w -t raw -A HP_DELAY -j NFQUEUE --queue-num "$NFQ_QUEUE" --queue-bypass
    rm -f /run/nfq-delay.ready
    nfq-delay -r /run/nfq-delay.ready "$NFQ_QUEUE" "$DELAY_MS" &
    child=$!
    for _ in $(seq 1 100); do
        [[ -s /run/nfq-delay.ready ]] && break
        kill -0 "$child" 2>/dev/null || { wait "$child" || true; fail "nfq-delay did not start"; }
        sleep 0.05
    done
    [[ -s /run/nfq-delay.ready ]] || fail "nfq-delay not ready after 5 s"
    log "delay: NFQUEUE $NFQ_QUEUE -> nfq-delay ${DELAY_MS} ms (raw PREROUTING, both directions)"
    ;;
  *) fail "DELAY_MODE must be auto, netem or nfqueue, got '$mode'" ;;
esac

touch /tmp/setup-done
log "ready (PUBLIC_ALLOW=${PUBLIC_ALLOW:-any})"

if [[ -n $child ]]; then
    set +e
    wait "$child"
    rc=$?
    rm -f /tmp/setup-done
    echo "router: ERROR: nfq-delay exited (status $rc); a router without its delay must not pass tests" >&2
    exit $(( rc == 0 ? 1 : rc ))
fi
# netem or no delay: nothing to supervise; sleep until stopped
sleep infinity &
child=$!
wait "$child"

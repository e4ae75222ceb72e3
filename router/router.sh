#!/bin/bash
# holepunch NAT router entrypoint (see router/README.md).
#
# Env:  PUBLIC_SUBNET  CIDR of the simulated internet (required)
#       LAN_SUBNET     CIDR of this router's LAN (required)
#       DELAY_MS       delay per direction, ms (default 50; 0 = no delay)
#       PUBLIC_ALLOW   optional comma-separated public IPs: forward only to/from these on the public side
#       NFQ_QUEUE      NFQUEUE number used for the delay (default 0; each container has its own netns)
#       DELAY_MODE     auto (default: netem if the kernel has it, else nfqueue) | netem | nfqueue
#       NAT            behaviour preset: port-restricted-cone (default) | full-cone | restricted-cone | symmetric
#       NAT_MAPPING    eim (endpoint-independent) | apdm (a new external port per destination)
#       NAT_FILTERING  apdf (address-and-port-dependent) | adf (address-dependent) | eif (endpoint-independent)
#       NAT_PORTS      preserve (keep the source port when free) | random
#       NAT_TIMEOUT    seconds an idle mapping stays open to new peers (eif/adf, eim+random; default 120)
#       DEFAULT_VIA    optional gateway on the public side (a home router behind a carrier NAT)
#       CAPTURE_BYTES  capture the public side's traffic, at most this many bytes (default 0: none)
#       CAPTURE_FILE   where the capture goes (default /tmp/holepunch-public.pcap)
#       ROUTER_STANDBY stdin: wait for the settings above as NAME=VALUE lines on stdin (a warm router)
# Needs: cap NET_ADMIN, sysctl net.ipv4.ip_forward=1. Creates /tmp/setup-done when ready.
set -euo pipefail

log() { echo "router: $*" >&2; }
fail() { echo "router: ERROR: $*" >&2; rm -f /tmp/setup-done; exit 1; }

rm -f /tmp/setup-done

# ROUTER_STANDBY=stdin: a holepunch worker's warm router (worker/warmrouters.py), started before its
# test is known. The settings above arrive on stdin as NAME=VALUE lines, ended by an empty line;
# nothing below runs until then. Only the names above are taken: anything else is refused.
SETTINGS="PUBLIC_SUBNET LAN_SUBNET DELAY_MS PUBLIC_ALLOW NFQ_QUEUE DELAY_MODE NAT NAT_MAPPING NAT_FILTERING NAT_PORTS NAT_TIMEOUT DEFAULT_VIA CAPTURE_BYTES CAPTURE_FILE"
if [[ ${ROUTER_STANDBY:-} == stdin ]]; then
    log "standby: waiting for the settings on stdin"
    configured=
    while IFS= read -r line; do
        if [[ -z $line ]]; then configured=1; break; fi
        name=${line%%=*}
        [[ $line == *=* && " $SETTINGS " == *" $name "* ]] || fail "standby: not a router setting: '${line:0:60}' (expected NAME=VALUE, NAME one of: $SETTINGS)"
        export "$line"
        log "setting $line"
    done
    [[ -n $configured ]] || fail "standby: stdin ended before the settings' closing empty line"
elif [[ -n ${ROUTER_STANDBY:-} ]]; then
    fail "ROUTER_STANDBY must be stdin or unset, got '$ROUTER_STANDBY'"
fi

: "${PUBLIC_SUBNET:?router: PUBLIC_SUBNET (CIDR of the public network) is required}"
: "${LAN_SUBNET:?router: LAN_SUBNET (CIDR of the LAN of this router) is required}"
DELAY_MS=${DELAY_MS:-50}
NFQ_QUEUE=${NFQ_QUEUE:-0}
DELAY_MODE=${DELAY_MODE:-auto}
PUBLIC_ALLOW=${PUBLIC_ALLOW:-}
[[ $DELAY_MS =~ ^[0-9]+$ ]] || fail "DELAY_MS must be a whole number of ms, got '$DELAY_MS'"

# NAT behaviour (RFC 4787 terms): a preset gives the three knobs; a knob given on its own wins
NAT=${NAT:-port-restricted-cone}
case $NAT in
  port-restricted-cone) m=eim  f=apdf p=preserve ;;
  full-cone)            m=eim  f=eif  p=preserve ;;
  restricted-cone)      m=eim  f=adf  p=preserve ;;
  symmetric)            m=apdm f=apdf p=random ;;
  cgnat) fail "NAT=cgnat is two routers: a home router (NAT=port-restricted-cone, DEFAULT_VIA=<carrier's address>) behind a carrier router (NAT_PORTS=random); see router/README.md" ;;
  *) fail "NAT must be one of port-restricted-cone, full-cone, restricted-cone, symmetric, got '$NAT'" ;;
esac
NAT_MAPPING=${NAT_MAPPING:-$m} NAT_FILTERING=${NAT_FILTERING:-$f} NAT_PORTS=${NAT_PORTS:-$p}
NAT_TIMEOUT=${NAT_TIMEOUT:-120}
DEFAULT_VIA=${DEFAULT_VIA:-}
[[ $NAT_MAPPING =~ ^(eim|apdm)$ ]] || fail "NAT_MAPPING must be eim or apdm, got '$NAT_MAPPING'"
[[ $NAT_FILTERING =~ ^(eif|adf|apdf)$ ]] || fail "NAT_FILTERING must be eif, adf or apdf, got '$NAT_FILTERING'"
[[ $NAT_PORTS =~ ^(preserve|random)$ ]] || fail "NAT_PORTS must be preserve or random, got '$NAT_PORTS'"
[[ $NAT_MAPPING/$NAT_PORTS != apdm/preserve ]] || fail "NAT_MAPPING=apdm gives a new port per destination: it cannot preserve ports (use NAT_PORTS=random)"
[[ $NAT_TIMEOUT =~ ^[0-9]+$ ]] && ((NAT_TIMEOUT > 0)) || fail "NAT_TIMEOUT must be a whole number of seconds > 0, got '$NAT_TIMEOUT'"
# today's router, unchanged: iptables MASQUERADE and conntrack filtering, no nftables table
[[ $NAT_MAPPING/$NAT_FILTERING/$NAT_PORTS == eim/apdf/preserve ]] && NAT_DEFAULT=1 || NAT_DEFAULT=

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
[[ -z $DEFAULT_VIA ]] || in_cidr "$DEFAULT_VIA" "$PUBLIC_SUBNET" || fail "DEFAULT_VIA '$DEFAULT_VIA' is not in PUBLIC_SUBNET $PUBLIC_SUBNET"

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
log "public $PUB_IF $PUB_IP ($PUBLIC_SUBNET), lan $LAN_IF $LAN_IP ($LAN_SUBNET), delay ${DELAY_MS} ms, nat $NAT_MAPPING+$NAT_FILTERING+$NAT_PORTS"

# forwarding: given by compose `sysctls: net.ipv4.ip_forward: 1` (/proc/sys is read-only in a container)
# (with NET_ADMIN, Docker leaves /proc/sys/net writable, so the write below also works)
if [[ $(cat /proc/sys/net/ipv4/ip_forward) != 1 ]]; then
    echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null \
        || fail "net.ipv4.ip_forward is 0 and cannot be set here: add sysctl net.ipv4.ip_forward=1"
fi

# default route: Docker gave us one via whichever network came first; everything non-local is
# on the public side (an internal network: nothing leaves the machine)
# (behind a carrier NAT, DEFAULT_VIA names the carrier router instead)
if [[ -n $DEFAULT_VIA ]]; then
    ip route replace default via "$DEFAULT_VIA" dev "$PUB_IF" || fail "cannot set the default route via $DEFAULT_VIA"
else
    ip route replace default dev "$PUB_IF" || fail "cannot set the default route (NET_ADMIN missing?)"
fi

IPT=iptables
$IPT -w -L -n >/dev/null 2>&1 || fail "iptables does not work here (NET_ADMIN missing?)"

# nat_table: every behaviour but the default, as one nftables table `ip holepunch_nat`.
# Mapping: eim+preserve = masquerade (ports kept when free); apdm = masquerade random (a fresh
# port per flow, i.e. per destination address and port); eim+random = the first flow of a LAN
# endpoint gets a random port, which @eim_<proto> then gives to every later flow of that endpoint.
# Filtering: apdf = conntrack alone (HP_FWD lets only replies in); eif/adf = @ext_<proto> maps each
# external port to its LAN endpoint and the prerouting chain DNATs a new inbound flow to it (adf:
# only from an address that endpoint has sent to, kept in @seen_<proto>). The track chain runs after
# srcnat, so the conntrack entry already holds the external port; an entry lives NAT_TIMEOUT s
# after the last packet that went out through its mapping.
nat_table() {
    command -v nft >/dev/null || fail "NAT_MAPPING=$NAT_MAPPING NAT_FILTERING=$NAT_FILTERING NAT_PORTS=$NAT_PORTS needs nft (nftables), which this image lacks"
    local t=$NAT_TIMEOUT pr sets="" post="" track="" pre=""
    for pr in udp tcp; do
        sets+="  map ext_$pr { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${t}s; }
  set seen_$pr { type inet_service . ipv4_addr; flags dynamic,timeout; timeout ${t}s; }
  map eim_$pr { type ipv4_addr . inet_service : inet_service; flags dynamic,timeout; timeout ${t}s; }
"
        if [[ $NAT_MAPPING/$NAT_PORTS == eim/random ]]; then
            post+="    oifname \"$PUB_IF\" ip saddr $LAN_SUBNET ip saddr . $pr sport @eim_$pr snat ip to $PUB_IP : ip saddr . $pr sport map @eim_$pr
"
            track+="    oifname \"$PUB_IF\" ct direction original meta l4proto $pr update @eim_$pr { ct original ip saddr . ct original proto-src : ct reply proto-dst }
    oifname \"$PUB_IF\" ct direction reply ct status dnat meta l4proto $pr update @eim_$pr { ct reply ip saddr . ct reply proto-src : ct original proto-dst }
"
        fi
        if [[ $NAT_FILTERING != apdf ]]; then
            track+="    oifname \"$PUB_IF\" ct direction original meta l4proto $pr update @ext_$pr { ct reply proto-dst : ct original ip saddr . ct original proto-src }
    oifname \"$PUB_IF\" ct direction reply ct status dnat meta l4proto $pr update @ext_$pr { ct original proto-dst : ct reply ip saddr . ct reply proto-src }
"
            if [[ $NAT_FILTERING == adf ]]; then
                track+="    oifname \"$PUB_IF\" ct direction original meta l4proto $pr update @seen_$pr { ct reply proto-dst . ip daddr }
    oifname \"$PUB_IF\" ct direction reply ct status dnat meta l4proto $pr update @seen_$pr { ct original proto-dst . ip daddr }
"
                pre+="    iifname \"$PUB_IF\" ip daddr $PUB_IP $pr dport . ip saddr @seen_$pr $pr dport @ext_$pr dnat ip to $pr dport map @ext_$pr
"
            else
                pre+="    iifname \"$PUB_IF\" ip daddr $PUB_IP $pr dport @ext_$pr dnat ip to $pr dport map @ext_$pr
"
            fi
        fi
    done
    local random=""
    [[ $NAT_PORTS == random ]] && random=" random"
    post+="    oifname \"$PUB_IF\" ip saddr $LAN_SUBNET masquerade$random
"
    nft delete table ip holepunch_nat 2>/dev/null || true
    nft -f - <<EOT || fail "cannot load the nftables rules for $NAT_MAPPING+$NAT_FILTERING+$NAT_PORTS"
table ip holepunch_nat {
$sets
  chain pre { type nat hook prerouting priority dstnat; policy accept;
$pre  }
  chain post { type nat hook postrouting priority srcnat; policy accept;
$post  }
  chain track { type filter hook postrouting priority srcnat + 10; policy accept;
$track  }
}
EOT
}

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
# eif/adf: new flows that the nftables table below let in (it DNATs them to a mapped LAN endpoint)
[[ $NAT_FILTERING == apdf ]] || $IPT -w -A HP_FWD -i "$PUB_IF" -o "$LAN_IF" -m conntrack --ctstate DNAT -j ACCEPT
if ((${#ALLOW[@]})); then
    for a in "${ALLOW[@]}"; do $IPT -w -A HP_FWD -i "$LAN_IF" -o "$PUB_IF" -d "$a" -j ACCEPT; done
else
    $IPT -w -A HP_FWD -i "$LAN_IF" -o "$PUB_IF" -j ACCEPT
fi
$IPT -w -A HP_FWD -j DROP
# NAT: masquerade LAN traffic behind our public address; MASQUERADE keeps source ports when it
# can (no --random), the endpoint-independent mapping hole punching needs
if [[ -n $NAT_DEFAULT ]]; then
    $IPT -w -t nat -A HP_POST -o "$PUB_IF" -s "$LAN_SUBNET" -j MASQUERADE
else
    nat_table
fi

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

# --- the capture of the public side: the evidence of a failed test (worker.captures) ---
# Every packet, whole (snaplen 0), written as it comes, from before the router is ready until it
# stops; `head` ends it at CAPTURE_BYTES (tcpdump then stops on the closed pipe), so a test never
# fills the disk. The last packet may be cut: the worker drops it. The worker reads the file while
# the router still runs, so nothing may wait in a buffer: --immediate-mode hands each packet to
# tcpdump at once (else libpcap holds up to a second of them), -U writes it at once, and
# `stdbuf -o0` keeps head from holding up to 4 KiB (its stdout to a file is block-buffered):
# without them a capture missed the test's last second, often the whole direct connection.
CAPTURE_BYTES=${CAPTURE_BYTES:-0}
CAPTURE_FILE=${CAPTURE_FILE:-/tmp/holepunch-public.pcap}
[[ $CAPTURE_BYTES =~ ^[0-9]+$ ]] || fail "CAPTURE_BYTES must be a whole number of bytes, got '$CAPTURE_BYTES'"
start_capture() {
    ((CAPTURE_BYTES > 0)) || return 0
    command -v tcpdump >/dev/null || fail "CAPTURE_BYTES=$CAPTURE_BYTES needs tcpdump, which this image lacks (holepunch-controller build router)"
    rm -f "$CAPTURE_FILE" /tmp/holepunch-capture.log
    ( tcpdump -i "$PUB_IF" -n --immediate-mode -U -s 0 -Z root -w - 2>/tmp/holepunch-capture.log \
        | stdbuf -o0 head -c "$CAPTURE_BYTES" > "$CAPTURE_FILE" ) &
    for _ in $(seq 1 100); do
        grep -q "listening on" /tmp/holepunch-capture.log 2>/dev/null && break
        sleep 0.05
    done
    grep -q "listening on" /tmp/holepunch-capture.log 2>/dev/null \
        || fail "tcpdump did not start on $PUB_IF: $(cat /tmp/holepunch-capture.log 2>/dev/null)"
    log "capture: $PUB_IF -> $CAPTURE_FILE (at most $CAPTURE_BYTES bytes)"
}

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

start_capture
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

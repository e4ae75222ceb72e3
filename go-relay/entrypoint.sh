#!/bin/sh
# holepunch-go-relay entrypoint, as rust-relay's: with DELAY_MS > 0 (default 25), delay the relay's
# own egress through the router image's NFQUEUE stage (needs cap NET_ADMIN) and run the relay under
# its supervision (if nfq-delay dies, the relay is stopped: no silently undelayed relay); with
# DELAY_MS=0, exec the relay directly. Arguments are passed to holepunch-go-relay.
set -eu
DELAY_MS="${DELAY_MS:-25}"
case "$DELAY_MS" in
    ''|*[!0-9]*) echo "holepunch-relay-entrypoint: DELAY_MS must be a whole number of ms, got '$DELAY_MS'" >&2; exit 2 ;;
esac
if [ "$DELAY_MS" -gt 0 ]; then
    if ! iptables -w -t raw -S OUTPUT >/dev/null 2>&1; then
        echo "holepunch-relay-entrypoint: DELAY_MS=$DELAY_MS needs cap NET_ADMIN (run with --cap-add NET_ADMIN, or DELAY_MS=0)" >&2
        exit 3
    fi
    exec /usr/local/bin/holepunch-egress-delay "$DELAY_MS" -- /usr/local/bin/holepunch-go-relay "$@"
fi
exec /usr/local/bin/holepunch-go-relay "$@"

"""The simulated internet's shape: one definition each for what controller and workers agree on."""

from __future__ import annotations

from cluster.models import Transport

# Every worker host's internal network that plays the internet (DESIGN.md, "The test").
PUBLIC_NETWORK = "hole-punch-network"
# Routable-looking (go-libp2p and js-libp2p skip private ranges as hole-punch candidates), and
# internal, so no packet can leave the machine.
DEFAULT_PUBLIC_SUBNET = "11.11.0.0/16"
REDIS_PORT = 6379
# Each router delays every forwarded packet this long in each direction: a 200 ms direct RTT.
DEFAULT_DELAY_MS = 50
# The direct path's round trip in that model: two routers, each crossed once each way.
DIRECT_RTT_MS = 4 * DEFAULT_DELAY_MS
# A passing test whose RTT strays further than this share from DIRECT_RTT_MS is an RTT anomaly
# (one of 56 read 252 ms, the relayed path's figure, on a "direct" connection).
RTT_ANOMALY_SHARE = 0.10
TRANSPORTS: tuple[str, ...] = tuple(transport.value for transport in Transport)

"""What the upstream client contract fixes (libp2p/test-plans hole-punch-interop), in one place.

An image made for upstream's harness reads only MODE and TRANSPORT, talks to Redis at the host
name `redis`, port 6379, with bare keys, and has no ENTRYPOINT or CMD: upstream's compose runs
`hole-punch-client` (on its PATH, /usr/bin in rust-libp2p's image) after routing it.
"""

from __future__ import annotations

REDIS_HOST = "redis"          # the compose service an upstream client finds Redis at
CLIENT_COMMAND = ("hole-punch-client",)   # what upstream's compose runs in the client container
CLIENT_PATH = "/usr/bin/hole-punch-client"  # where upstream's Dockerfiles put it

# The per-test helpers run from the router image (router/Dockerfile).
NETNS_HOLDER = "/usr/local/bin/holepunch-netns-holder"
NETNS_READY_FILE = "/tmp/netns-ready"
KEYSPACE_PROXY = "/usr/local/bin/holepunch-keyspace-proxy"
KEYSPACE_READY_FILE = "/tmp/keyspace-proxy-ready"

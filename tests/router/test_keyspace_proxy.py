"""router/keyspace-proxy: a test's private key space over a real Redis (redis-server on
loopback), as an upstream client and one of ours see it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.redis_server import free_port

PROXY = Path(__file__).resolve().parents[2] / "router" / "keyspace-proxy"
PREFIX = "hp-test-1:"


@pytest.fixture
def store(broker_url):
    client = redis.Redis.from_url(broker_url, decode_responses=True)
    client.flushdb()
    return client


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proxied(store, tmp_path, request):
    """A bare-key client of the proxy in front of `store`, speaking RESP2 (upstream's rust
    client) or RESP3 (what redis-py asks for by HELLO)."""
    port, ready = free_port(), tmp_path / "ready"
    upstream = store.connection_pool.connection_kwargs
    proc = subprocess.Popen([sys.executable, str(PROXY)], stderr=subprocess.PIPE, text=True, env={
        **os.environ, "KEY_PREFIX": PREFIX, "UPSTREAM": f"{upstream['host']}:{upstream['port']}",
        "LISTEN_PORT": str(port), "READY_FILE": str(ready)})
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "not ready"
    yield redis.Redis(port=port, decode_responses=True, socket_timeout=5, protocol=request.param)
    proc.terminate()
    proc.wait(timeout=5)


def test_bare_keys_land_in_the_tests_space(proxied, store):
    # what the harness pushes for the test, and what our own listener writes
    relay = "/ip4/11.11.0.3/tcp/4001/p2p/relay"
    store.rpush(f"{PREFIX}RELAY_TCP_ADDRESS", relay, relay)
    store.rpush("hp-other:RELAY_TCP_ADDRESS", "another test's")
    # an upstream client reads it by its bare name, and BLPOP names the key as it asked
    assert list(proxied.blpop(["RELAY_TCP_ADDRESS"], timeout=0)) == ["RELAY_TCP_ADDRESS", relay]
    proxied.rpush("LISTEN_CLIENT_PEER_ID", "12D3KooW")
    assert store.lrange(f"{PREFIX}LISTEN_CLIENT_PEER_ID", 0, -1) == ["12D3KooW"]
    assert not store.exists("LISTEN_CLIENT_PEER_ID")
    assert proxied.llen("RELAY_TCP_ADDRESS") == 1 and store.llen("hp-other:RELAY_TCP_ADDRESS") == 1
    assert proxied.ping()


def test_a_blocking_pop_waits_for_our_listener(proxied, store):
    later = threading.Timer(0.3, lambda: store.rpush(f"{PREFIX}LISTEN_CLIENT_PEER_ID", "12D3KooW"))
    later.start()
    assert list(proxied.blpop("LISTEN_CLIENT_PEER_ID", timeout=0)) == ["LISTEN_CLIENT_PEER_ID", "12D3KooW"]


@pytest.mark.parametrize("command", [("KEYS", "*"), ("SCAN", "0"), ("FLUSHALL",), ("CONFIG", "GET", "*"),
                                     ("EVAL", "return 1", "0"), ("SELECT", "1"), ("SUBSCRIBE", "x")])
def test_a_client_cannot_see_out_of_its_space(proxied, store, command):
    store.set("hp-other:SECRET", "x")
    with pytest.raises(redis.ResponseError, match="not available in a test's key space"):
        proxied.execute_command(*command)
    assert store.get("hp-other:SECRET") == "x"


def test_an_empty_prefix_is_refused(tmp_path):
    result = subprocess.run([sys.executable, str(PROXY)], capture_output=True, text=True, timeout=10,
                            env={**os.environ, "KEY_PREFIX": "", "UPSTREAM": "127.0.0.1:1"})
    assert result.returncode == 2 and "KEY_PREFIX is empty" in result.stderr

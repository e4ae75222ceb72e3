#!/usr/bin/env python3
"""Hole-punch interop client for py-libp2p 0.8 (contract: impl/README.md).

MODE=listen: connect to the relay, make an explicit Circuit Relay v2 reservation, publish our
peer id, stay up; DCUtR (which py-libp2p drives from the side that holds the relayed
connection) does the punch.

MODE=dial: dial the listener through the relay, wait until a direct (non /p2p-circuit)
connection to it exists, ping over exactly that connection and print
{"rtt_to_holepunched_peer_millis": N} as the last stdout line.

Logs go to stderr; any failure exits 1 with one "hole_punch_client: error: ..." line naming the
reason. Redis calls are blocking (redis-py) and run before or beside the trio loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import multiaddr
import redis
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn
from libp2p.connection_types import ConnectionType
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import MAX_HOLE_PUNCH_ATTEMPTS, DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

LOG = logging.getLogger("hole_punch_client")

PING_PROTOCOL = TProtocol("/ipfs/ping/1.0.0")
PING_SIZE = 32
PING_COUNT = 5  # the RTT reported is their median
CIRCUIT = "/p2p-circuit"


class ClientError(Exception):
    """A failure that ends the run: the message is the reason printed on stderr."""


@dataclass(frozen=True)
class Settings:
    mode: str  # "dial" | "listen"
    transport: str  # "tcp" | "quic"
    secure_channel: str  # "noise" (tls is refused: settings_from_env)
    muxer: str  # "yamux" | "mplex"
    redis_host: str
    redis_port: int
    test_key: str
    deadline_s: float  # whole run, dialer only (a listener stays up until stopped)
    direct_wait_s: float  # how long the dialer waits for DCUtR to produce a direct connection

    def key(self, name: str) -> str:
        return f"{self.test_key}:{name}" if self.test_key else name

    @property
    def relay_key(self) -> str:
        return self.key("RELAY_TCP_ADDRESS" if self.transport == "tcp" else "RELAY_QUIC_ADDRESS")

    @property
    def listen_addr(self) -> multiaddr.Multiaddr:
        if self.transport == "tcp":
            return multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/0")
        return multiaddr.Multiaddr("/ip4/0.0.0.0/udp/0/quic-v1")


def settings_from_env(env: dict[str, str]) -> Settings:
    def need(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ClientError(f"environment variable {name} is not set")
        return value

    mode = need("MODE")
    if mode not in ("dial", "listen"):
        raise ClientError(f"MODE={mode!r}: expected 'dial' or 'listen'")
    transport = need("TRANSPORT")
    if transport not in ("tcp", "quic"):
        raise ClientError(f"TRANSPORT={transport!r}: expected 'tcp' or 'quic'")
    # Unset means the default (noise, yamux); QUIC brings its own TLS and streams.
    # py-libp2p 0.8 ships tls, but over it a relayed connection reports /ip4/0.0.0.0/... as its
    # address, not /p2p-circuit, so this client could not tell it from a direct one (seen: a
    # "direct" ping at the relayed 255 ms). Refused until the client tells them apart.
    secure_channel = env.get("SECURE_CHANNEL", "").strip() or "noise"
    if secure_channel != "noise":
        raise ClientError(f"SECURE_CHANNEL={secure_channel!r} is not supported "
                          "(this client supports noise)")
    muxer = env.get("MUXER", "").strip() or "yamux"
    if muxer not in ("yamux", "mplex"):
        raise ClientError(f"MUXER={muxer!r} is not supported (this client supports yamux, mplex)")
    host, sep, port = need("REDIS_ADDR").rpartition(":")
    if not sep or not port.isdigit():
        raise ClientError(f"REDIS_ADDR={env['REDIS_ADDR']!r}: expected host:port")
    return Settings(
        mode=mode,
        transport=transport,
        secure_channel=secure_channel,
        muxer=muxer,
        redis_host=host,
        redis_port=int(port),
        test_key=env.get("TEST_KEY", "").strip(),
        deadline_s=float(env.get("HOLEPUNCH_DEADLINE_SECONDS", "90")),
        direct_wait_s=float(env.get("HOLEPUNCH_DIRECT_WAIT_SECONDS", "30")),
    )


# --- Redis (blocking; called through trio.to_thread) -------------------------------------


def blpop(client: redis.Redis, key: str, timeout_s: float) -> str:
    item = client.blpop([key], timeout=max(1, int(timeout_s)))
    if item is None:
        raise ClientError(f"nothing arrived on Redis key {key} within {int(timeout_s)} s")
    return item[1].decode() if isinstance(item[1], bytes) else str(item[1])


@contextlib.contextmanager
def step(what: str, seconds: float) -> Iterator[None]:
    """Run one step under its own timeout; a timeout or error becomes a ClientError naming it."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise ClientError(f"{what}: timed out after {seconds:.0f} s") from None
    except (ClientError, trio.Cancelled):
        raise
    except Exception as exc:
        raise ClientError(f"{what}: {type(exc).__name__}: {exc}") from exc


# --- libp2p helpers ---------------------------------------------------------------------------


def is_relayed(conn: INetConn) -> bool:
    try:
        if conn.get_connection_type() == ConnectionType.RELAYED:
            return True
    except Exception:
        pass
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        return True  # unknown: never treat it as direct
    return not addrs or any(CIRCUIT in str(a) for a in addrs)


def direct_connection(host: IHost, peer: ID) -> INetConn | None:
    conns = host.get_network().get_connections(peer)
    for conn in conns:
        if not conn.is_closed and not is_relayed(conn):
            return conn
    return None


# After our DCUtR attempts are spent, how long the listener has to start one of its own before
# the punch has failed (py-libp2p's DCUtR runs from both sides).
PUNCH_RETRY_GRACE_S = 3.0


def punch_failed(host: IHost, peer: ID) -> str | None:
    """Why the hole punch to `peer` can no longer succeed, or None while it still may: no open
    connection to it is left (the relayed one closed), or our DCUtR spent its attempt budget and
    runs no session with it (py-libp2p 0.8 keeps both in DCUtRProtocol, which has no events)."""
    if not any(not c.is_closed for c in host.get_network().get_connections(peer)):
        return "the relayed connection closed with no direct one"
    dcutr = getattr(host, "_dcutr_protocol", None)
    if dcutr is None:
        return None
    attempts = dcutr._hole_punch_attempts.get(peer, 0)
    if attempts >= MAX_HOLE_PUNCH_ATTEMPTS and peer not in dcutr._in_progress:
        return f"DCUtR gave up after {attempts} attempts"
    return None


def describe_connections(host: IHost, peer: ID) -> str:
    parts = []
    for conn in host.get_network().get_connections(peer):
        try:
            addrs = ",".join(str(a) for a in conn.get_transport_addresses())
        except Exception as exc:  # pragma: no cover - diagnostics only
            addrs = f"?({exc})"
        parts.append(f"[{addrs or 'no address'}{' closed' if conn.is_closed else ''}]")
    return " ".join(parts) or "none"


def upgrades(conn: INetConn) -> str:
    """What a connection negotiated, for the log: its muxer's and secure stream's classes
    (py-libp2p keeps no protocol ids there): Yamux or Mplex, NoiseTransportReadWriter."""
    muxed = getattr(conn, "muxed_conn", None)
    secured = getattr(getattr(muxed, "secured_conn", None), "conn", None)
    return f"muxer {type(muxed).__name__}, secure io {type(secured).__name__}"


def make_host(settings: Settings) -> IHost:
    key_pair = create_new_key_pair()
    # noise only (see settings_from_env); the muxer asked for comes first and yamux stays as the
    # fallback, since the relay speaks only yamux (two peers that both ask for mplex get it).
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    sec_opt = {NOISE_PROTOCOL_ID: noise}
    return new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_preference="MPLEX" if settings.muxer == "mplex" else "YAMUX",
        listen_addrs=[settings.listen_addr],
        enable_quic=settings.transport == "quic",
        enable_tcp=settings.transport == "tcp",
    )


async def wait_for_observed_address(host: IHost, timeout_s: float) -> None:
    """DCUtR advertises what identify observed: give the relay's identify a moment to land."""
    manager = getattr(host, "_observed_addr_manager", None)
    if manager is None:
        return
    with trio.move_on_after(timeout_s):
        while not [a for a in manager.addrs(min_observers=1) if CIRCUIT not in str(a)]:
            await trio.sleep(0.05)
    LOG.info("observed addresses: %s", [str(a) for a in manager.addrs(min_observers=1)])


async def ping_rtts(conn: INetConn, count: int) -> list[float]:
    """/ipfs/ping/1.0.0 round trips on this exact connection (one stream); milliseconds."""
    stream = await conn.new_stream()
    try:
        with trio.fail_after(15):
            await MultiselectClient().select_one_of([PING_PROTOCOL], MultiselectCommunicator(stream))
        rtts = []
        for _ in range(count):
            payload = secrets.token_bytes(PING_SIZE)
            started = time.perf_counter()
            await stream.write(payload)
            echoed = b""
            while len(echoed) < PING_SIZE:
                chunk = await stream.read(PING_SIZE - len(echoed))
                if not chunk:
                    raise ClientError("ping stream closed before the echo arrived")
                echoed += chunk
            rtts.append((time.perf_counter() - started) * 1000.0)
            if echoed != payload:
                raise ClientError("ping echo differs from the payload sent")
        return rtts
    finally:
        try:
            await stream.close()
        except Exception:
            pass


@contextlib.asynccontextmanager
async def running_host(settings: Settings,
                       roles: RelayRole) -> AsyncIterator[tuple[IHost, CircuitV2Transport]]:
    """A started host with the Circuit v2 STOP handler and DCUtR, plus the relay transport."""
    host = make_host(settings)
    protocol = CircuitV2Protocol(host, allow_hop=False)
    dcutr = DCUtRProtocol(host)
    async with host.run(listen_addrs=[settings.listen_addr]):
        async with background_trio_service(protocol), background_trio_service(dcutr):
            await protocol.event_started.wait()
            await dcutr.event_started.wait()
            transport = CircuitV2Transport(host, protocol, RelayConfig(roles=roles))
            LOG.info("peer id %s, listening on %s", host.get_id(), [str(a) for a in host.get_addrs()])
            yield host, transport


async def connect_relay(host: IHost, relay_addr: str) -> PeerInfo:
    relay = info_from_p2p_addr(multiaddr.Multiaddr(relay_addr))
    with step(f"connecting to the relay {relay_addr}", 60):
        await host.connect(relay)
    await wait_for_observed_address(host, 5)
    return relay


# --- roles ------------------------------------------------------------------------------------


async def run_listener(settings: Settings, client: redis.Redis) -> None:
    relay_addr = await trio.to_thread.run_sync(blpop, client, settings.relay_key, 300)
    LOG.info("relay address: %s", relay_addr)
    async with running_host(settings, RelayRole.STOP | RelayRole.CLIENT) as (host, transport):
        relay = await connect_relay(host, relay_addr)
        # py-libp2p makes no reservation by itself when it only listens: ask for one. The
        # nursery keeps its refresh task alive for as long as we stay up.
        async with trio.open_nursery() as nursery:
            with step(f"reserving a slot on the relay {relay.peer_id}", 60):
                stream = await host.new_stream(relay.peer_id, [HOP_PROTOCOL_ID])
                reserved = await transport.reserve(stream, relay.peer_id, nursery)
                await stream.close()
            if not reserved:
                raise ClientError(f"the relay {relay.peer_id} refused our reservation")
            LOG.info("reservation made with relay %s", relay.peer_id)
            progress("relay-reserved")
            await trio.to_thread.run_sync(
                client.rpush, settings.key("LISTEN_CLIENT_PEER_ID"), str(host.get_id())
            )
            LOG.info("published peer id; waiting for the dialer (DCUtR runs in the background)")
            while True:  # stay up until the harness stops us
                await trio.sleep(30)
                LOG.info("still up; connections: %d", len(host.get_network().connections))


async def run_dialer(settings: Settings, client: redis.Redis) -> None:
    relay_addr = await trio.to_thread.run_sync(blpop, client, settings.relay_key, settings.deadline_s)
    listener_text = await trio.to_thread.run_sync(
        blpop, client, settings.key("LISTEN_CLIENT_PEER_ID"), settings.deadline_s
    )
    LOG.info("relay address: %s; listener: %s", relay_addr, listener_text)
    listener = ID.from_base58(listener_text)
    # STOP only: a dialer needs no reservation of its own.
    async with running_host(settings, RelayRole.STOP) as (host, transport):
        await connect_relay(host, relay_addr)
        circuit = multiaddr.Multiaddr(f"{relay_addr}{CIRCUIT}/p2p/{listener}")
        LOG.info("dialing %s", circuit)
        # py-libp2p's swarm skips /p2p-circuit addresses: dial through the relay transport
        dialed = time.monotonic()
        with step(f"dialing the listener through the relay ({circuit})", 60):
            relayed = await transport.dial(circuit)
        LOG.info("relayed connection up: %s", [str(a) for a in relayed.get_transport_addresses()])
        progress("relayed-connection")

        # The listener's side (the inbound one) starts DCUtR, and py-libp2p's auto-drive loop
        # may start it from here too; we only wait for the direct connection to appear.
        started = time.monotonic()
        direct = None
        failed_since: float | None = None  # when punch_failed first said so, this time round
        with trio.move_on_after(settings.direct_wait_s):
            while (direct := direct_connection(host, listener)) is None:
                reason = punch_failed(host, listener)
                if reason is None:
                    failed_since = None
                elif failed_since is None:
                    failed_since = time.monotonic()
                elif time.monotonic() - failed_since > PUNCH_RETRY_GRACE_S or "closed" in reason:
                    raise ClientError(
                        f"the hole punch failed: {reason}, and no new attempt with {listener} began "
                        f"within {PUNCH_RETRY_GRACE_S:.0f} s "
                        f"(connections: {describe_connections(host, listener)})"
                    )
                await trio.sleep(0.1)
        if direct is None:
            raise ClientError(
                f"no direct connection to {listener} after {settings.direct_wait_s:.0f} s: "
                f"DCUtR did not upgrade (connections: {describe_connections(host, listener)})"
            )
        to_direct_ms = (time.monotonic() - dialed) * 1000.0
        addrs = [str(a) for a in direct.get_transport_addresses()]
        LOG.info("direct connection after %.1f s: %s (%s)", time.monotonic() - started, addrs,
                 upgrades(direct))
        progress("direct-connection")
        if any(CIRCUIT in a for a in addrs):  # belt and braces: never report a relayed RTT
            raise ClientError(f"refusing to ping over a relayed connection {addrs}")
        with step(f"pinging over the direct connection {addrs}", 30):
            rtts = await ping_rtts(direct, PING_COUNT)
        LOG.info("ping over %s: %s ms", addrs, ", ".join(f"{r:.1f}" for r in rtts))
        progress("ping")
        # Report and leave at once: py-libp2p's teardown can take seconds (or hang) and must
        # not eat into the deadline after the result is in.
        finish(rtts, to_direct_ms)
    raise ClientError("host stopped before a result")  # pragma: no cover


def progress(name: str) -> None:
    """Tell the harness how far the test got: `holepunch-step: NAME` on stderr."""
    print(f"holepunch-step: {name}", file=sys.stderr, flush=True)


def result_line(rtts: list[float], to_direct_ms: float) -> str:
    """The median RTT in whole ms (the contract's field), every sample, the time to direct."""
    return json.dumps({"rtt_to_holepunched_peer_millis": round(statistics.median(rtts)),
                       "time_to_direct_ms": round(to_direct_ms, 1),
                       "rtt_samples_millis": [round(r, 1) for r in rtts]})


def finish(rtts: list[float], to_direct_ms: float) -> None:
    """Print the result as the last stdout line and exit 0 without tearing anything down."""
    print(result_line(rtts, to_direct_ms), flush=True)
    sys.stderr.flush()
    os._exit(0)


async def main_async(settings: Settings) -> None:
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port, socket_connect_timeout=10)
    if settings.mode == "listen":
        await run_listener(settings, client)
        return
    try:
        with trio.fail_after(settings.deadline_s):
            await run_dialer(settings, client)  # exits the process itself on success
    except trio.TooSlowError:
        raise ClientError(f"overall deadline of {settings.deadline_s:.0f} s passed") from None


def failure_reason(exc: BaseException) -> str | None:
    """The reason for a known failure, looking inside trio's exception groups."""
    if isinstance(exc, ClientError):
        return str(exc)
    if isinstance(exc, trio.TooSlowError):
        return "a step timed out"
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            reason = failure_reason(inner)
            if reason is not None:
                return reason
    return None


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # py-libp2p detaches its "libp2p" logger at import unless LIBP2P_DEBUG is set; put it back
    # under our handler, at WARNING by default (it is chatty at INFO about retries it recovers
    # from). LIBP2P_LOG_LEVEL=DEBUG shows what DCUtR does.
    library_level = os.environ.get("LIBP2P_LOG_LEVEL", "WARNING").upper()
    for name in ("libp2p", "quic", "aioquic"):
        library_logger = logging.getLogger(name)
        library_logger.setLevel(library_level)
        if name == "libp2p" and not os.environ.get("LIBP2P_DEBUG"):
            library_logger.handlers.clear()
            library_logger.propagate = True
    for name, child in logging.root.manager.loggerDict.items():
        if name.startswith("libp2p.") and isinstance(child, logging.Logger):
            child.setLevel(logging.NOTSET)  # some modules set INFO themselves: inherit instead
    settings: Settings | None = None
    try:
        settings = settings_from_env(dict(os.environ))
        trio.run(main_async, settings)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - every failure is a reason on stderr
        reason = failure_reason(exc)
        if reason is None:
            LOG.error("unexpected failure", exc_info=exc)
            reason = f"{type(exc).__name__}: {exc}"
        print(f"hole_punch_client: error: {reason}", file=sys.stderr, flush=True)
        return 1
    # run_dialer leaves through finish(); anything else failed
    if settings is not None and settings.mode == "dial":
        print("hole_punch_client: error: the dialer ended without a result", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # py-libp2p can leave non-daemon threads behind (aioquic, resolvers): do not wait for them.
    os._exit(code)

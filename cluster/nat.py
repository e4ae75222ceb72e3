"""NAT behaviours in RFC 4787's terms: the presets, what the probe observed, and theory's verdict.

Pure definitions, shared by the controller (the probe, later the matrix) and the worker (later the
compose file). The router (router/router.sh) takes a behaviour through its environment; the probe
(router/probe/) reports raw observations that `classify` turns back into a behaviour, so a preset
is proven by comparing the two. `punch_verdict` says, from the behaviours alone, whether a hole
punch can work at all: an implementation that does worse is at fault, one that does better means
the harness is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from cluster.errors import UsageError


class Dependence(str, Enum):
    """What a mapping or a filter depends on, besides the internal endpoint (RFC 4787 4.1, 5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


EIM = EIF = Dependence.ENDPOINT_INDEPENDENT
ADM = ADF = Dependence.ADDRESS_DEPENDENT
APDM = APDF = Dependence.ADDRESS_AND_PORT_DEPENDENT


@dataclass(frozen=True)
class Behaviour:
    """One NAT's behaviour, or what a chain of NATs looks like from outside."""

    mapping: Dependence
    filtering: Dependence
    port_preserved: bool

    def router_env(self) -> dict[str, str]:
        """The router's environment for this behaviour; empty for the default (today's router,
        whose compose file must not change)."""
        if self == DEFAULT_BEHAVIOUR:
            return {}
        if self.mapping == ADM:
            raise ValueError("the router has no address-dependent mapping")
        return {"NAT_MAPPING": _KNOB[self.mapping] + "m", "NAT_FILTERING": _KNOB[self.filtering] + "f",
                "NAT_PORTS": "preserve" if self.port_preserved else "random"}


_KNOB = {EIM: "ei", ADM: "ad", APDM: "apd"}

DEFAULT_BEHAVIOUR = Behaviour(EIM, APDF, port_preserved=True)


@dataclass(frozen=True)
class Router:
    """One router of a preset: its behaviour and its share of the 50 ms one-way delay per peer."""

    behaviour: Behaviour
    delay_ms: int


@dataclass(frozen=True)
class Preset:
    """A named NAT: the behaviour seen from the internet and the routers that make it, the one
    next to the client first (cgnat: the home router, then the carrier's)."""

    name: str
    behaviour: Behaviour
    routers: tuple[Router, ...]
    summary: str


PEER_DELAY_MS = 50  # one way through a peer's NAT(s): two peers give the 200 ms direct RTT

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("full-cone", Behaviour(EIM, EIF, True), (Router(Behaviour(EIM, EIF, True), 50),),
           "any host may send to a mapped port"),
    Preset("restricted-cone", Behaviour(EIM, ADF, True), (Router(Behaviour(EIM, ADF, True), 50),),
           "hosts the client has sent to may send to its mapped port, from any port"),
    Preset("port-restricted-cone", DEFAULT_BEHAVIOUR, (Router(DEFAULT_BEHAVIOUR, 50),),
           "only the exact address:port the client has sent to (Linux MASQUERADE; the default)"),
    Preset("symmetric", Behaviour(APDM, APDF, False), (Router(Behaviour(APDM, APDF, False), 50),),
           "a new random external port for every destination address:port"),
    Preset("cgnat", Behaviour(EIM, APDF, False),
           (Router(DEFAULT_BEHAVIOUR, 25), Router(Behaviour(EIM, APDF, False), 25)),
           "a port-restricted home router behind a carrier NAT (100.64.0.0/10 inside, random "
           "but stable external ports); the two routers split the 50 ms"),
)}
DEFAULT_PRESET = "port-restricted-cone"
CARRIER_SUBNET_POOL = "100.64.0.0/10"  # RFC 6598 shared address space: the carrier's inside
# A worker's carrier networks (cgnat tests): the pair of /24s of a test's LAN lease index, inside
# 100.64.0.0/10 and apart from the probe's 100.127.0.0/16.
WORKER_CARRIER_POOL = "100.96.0.0/16"


def preset(name: str, option: str = "PRESET") -> Preset:
    """The preset of that name, or a usage error (exit 2) naming the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(option, f"unknown NAT preset {name!r}; expected one of "
                                 f"{', '.join(PRESETS)}") from None


# --- the probe's observations (router/probe/nat_probe_client.py prints them as JSON) ---

ENDPOINTS = ("primary", "altPort", "altAddress", "altBoth")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class MappingObservation(_Strict):
    """One local port's external address:port as each server endpoint saw it (None: no answer)."""

    local_port: int = Field(alias="localPort")
    observed: dict[str, str | None]


class FilteringObservation(_Strict):
    """A fresh local port that sent only to `primary`: which endpoints' answers got through."""

    local_port: int = Field(alias="localPort")
    observed: str | None
    received: list[str]


class TransportObservation(_Strict):
    mapping: MappingObservation
    filtering: FilteringObservation
    # UDP only: the shortest of five round trips to the server (no delay of its own), so half
    # the direct RTT between two peers: PEER_DELAY_MS x 2 whatever the preset
    rtt_ms: float | None = Field(default=None, alias="rttMs")


class ProbeObservation(_Strict):
    udp: TransportObservation
    tcp: TransportObservation


class ProbeFailed(ValueError):
    """The probe's observations cannot be classified (an answer that should always come did not)."""


def _port(endpoint: str) -> int:
    return int(endpoint.rpartition(":")[2])


def classify_mapping(observation: MappingObservation) -> Dependence:
    """RFC 5780 4.3: same external endpoint towards primary and altAddress: independent; else the
    same towards altAddress and altBoth: address-dependent; else address-and-port-dependent."""
    seen = observation.observed
    missing = [name for name in ("primary", "altAddress", "altBoth") if not seen.get(name)]
    if missing:
        raise ProbeFailed(f"no mapping answer from {', '.join(missing)}")
    if seen["primary"] == seen["altAddress"]:
        return EIM
    if seen["altAddress"] == seen["altBoth"]:
        return ADM
    return APDM


def classify_filtering(observation: FilteringObservation) -> Dependence:
    """RFC 5780 4.4: an answer from another address got in: independent; only one from the same
    address and another port: address-dependent; only the primary's: address-and-port-dependent."""
    got = set(observation.received)
    if "primary" not in got:
        raise ProbeFailed("the primary endpoint's answer never arrived (the NAT let nothing back)")
    if got & {"altAddress", "altBoth"}:
        return EIF
    if "altPort" in got:
        return ADF
    return APDF


def ports_preserved(observation: TransportObservation) -> bool:
    """Every external port the probe saw equalled the local port it came from."""
    mapped = [(observation.mapping.local_port, e) for e in observation.mapping.observed.values() if e]
    if observation.filtering.observed:
        mapped.append((observation.filtering.local_port, observation.filtering.observed))
    return bool(mapped) and all(_port(endpoint) == local for local, endpoint in mapped)


def classify(observation: TransportObservation) -> Behaviour:
    return Behaviour(classify_mapping(observation.mapping), classify_filtering(observation.filtering),
                     ports_preserved(observation))


def behaviour_report(behaviour: Behaviour) -> dict[str, object]:
    """The YAML shape `nat-probe` prints per transport."""
    return {"mapping": behaviour.mapping.value, "filtering": behaviour.filtering.value,
            "portPreserved": behaviour.port_preserved}


# --- theory: can a hole punch work at all, from the two behaviours? ---

TRANSPORTS = ("tcp", "quic")


@dataclass(frozen=True)
class Verdict:
    possible: bool
    # which peers' punch packets get through the other side's NAT: "dialer->listener", "listener->dialer"
    directions: tuple[str, ...]
    reason: str


def _admits(sender: Behaviour, receiver: Behaviour) -> tuple[bool, str]:
    """Does the receiver's NAT let in the sender's punch packets, which go to the receiver's
    advertised address (its mapping towards the relay, as the relay observed it)?

    The sender's packets leave from its mapping towards the receiver: its advertised one under
    EIM, a fresh port under APDM (or ADM: the receiver's address differs from the relay's). The
    receiver's own punch packets open its filter only on the mapping they leave from, which is
    the advertised one only under EIM.
    """
    if receiver.filtering == EIF:
        return True, "endpoint-independent filter lets anyone in"
    if receiver.mapping != EIM:
        return False, ("its own packets leave from a new port, "
                       "so its advertised port stays open to the relay only")
    if receiver.filtering == ADF:
        return True, "it has sent to the sender's address from its advertised port"
    if sender.mapping == EIM:
        return True, ("it has sent to the sender's advertised address:port, "
                      "which the sender's packets come from")
    return False, "the sender's packets come from a new port it never sent to"


def punch_verdict(dialer: Behaviour, listener: Behaviour, transport: str) -> Verdict:
    """Whether DCUtR can work through this pair of NATs, without port prediction.

    Both peers send to each other's observed addresses at once. One direction getting through is
    enough: for TCP, the SYN that gets in meets a listener on that port (libp2p binds it with
    SO_REUSEPORT) and the SYN-ACK returns along the sender's own conntrack state, which the
    sender's outgoing SYN created; for QUIC, the same holds for the side whose packets carry
    the QUIC Initial, and which side that is in DCUtR differs between implementations, so a
    one-way cell counts as possible (its reason names the direction). TCP and QUIC therefore
    share the verdict; the NATs treat UDP and TCP alike.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    d_to_l, why_l = _admits(dialer, listener)
    l_to_d, why_d = _admits(listener, dialer)
    directions = tuple(name for name, ok in (("dialer->listener", d_to_l), ("listener->dialer", l_to_d))
                       if ok)
    if d_to_l and l_to_d:
        reason = "both directions pass"
    elif d_to_l:
        reason = f"only dialer->listener passes (listener: {why_l}; dialer: {why_d})"
    elif l_to_d:
        reason = f"only listener->dialer passes (dialer: {why_d}; listener: {why_l})"
    else:
        reason = f"neither direction passes without port prediction (listener: {why_l}; dialer: {why_d})"
    if transport == "quic" and len(directions) == 1:
        reason += "; QUIC needs that side to send the Initial"
    return Verdict(bool(directions), directions, reason)


def theory_table() -> dict[tuple[str, str, str], Verdict]:
    """(dialer preset, listener preset, transport) -> verdict, for every preset pair."""
    return {(dialer, listener, t): punch_verdict(PRESETS[dialer].behaviour, PRESETS[listener].behaviour, t)
            for dialer in PRESETS for listener in PRESETS for t in TRANSPORTS}

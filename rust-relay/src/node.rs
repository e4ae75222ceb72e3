//! The libp2p parts: the relay's swarm, and the small client the smoke check (and the tests) use.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, relay, tcp, yamux, Multiaddr, PeerId, Swarm};

use crate::relay_config;

/// The relay: Circuit Relay v2 (hop) server, identify (clients learn their observed address from
/// it, which their hole punch needs) and ping.
#[derive(NetworkBehaviour)]
pub struct RelayBehaviour {
    pub relay: relay::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// A relay swarm with a fresh identity: TCP (noise + yamux) and QUIC v1.
pub fn relay_swarm() -> Result<Swarm<RelayBehaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_quic()
        .with_behaviour(|key| RelayBehaviour {
            relay: relay::Behaviour::new(key.public().to_peer_id(), relay_config()),
            identify: identify::Behaviour::new(
                identify::Config::new("/ipfs/id/1.0.0".to_string(), key.public())
                    .with_agent_version(format!("holepunch-relay/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        })?
        // Clients keep their reservation connection open; idle ones (no reservation, no circuit) go.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// A relay client: reserves on / dials through a relay, identify, ping every second.
#[derive(NetworkBehaviour)]
pub struct ClientBehaviour {
    pub relay_client: relay::client::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

pub fn client_swarm() -> Result<Swarm<ClientBehaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| ClientBehaviour {
            relay_client,
            identify: identify::Behaviour::new(identify::Config::new("/ipfs/id/1.0.0".into(), key.public())),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1))),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build())
}

pub fn relay_peer(addr: &Multiaddr) -> Result<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(p)) => Ok(p),
        _ => bail!("relay address {addr} does not end with /p2p/<peer id>"),
    }
}

pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// What one smoke round saw.
#[derive(Debug)]
pub struct RoundReport {
    pub reserved_in: Duration,
    /// The listener's `/p2p-circuit` addresses: built from the relay's external addresses.
    pub reservation_addrs: Vec<Multiaddr>,
    /// The listener's address as the relay saw it (identify).
    pub observed: Option<Multiaddr>,
    /// Ping from dialer to listener over the relayed connection.
    pub circuit_rtt: Duration,
}

impl std::fmt::Display for RoundReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<String> = self.reservation_addrs.iter().map(|a| a.to_string()).collect();
        write!(
            f,
            "reserved in {:?}, relay saw us as {}, ping over circuit {:?}, reservation addrs [{}]",
            self.reserved_in,
            self.observed.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
            self.circuit_rtt,
            addrs.join(", ")
        )
    }
}

/// One round with fresh identities: a listener reserves on the relay (listens on
/// `<relay>/p2p-circuit`), then a dialer dials `<relay>/p2p-circuit/p2p/<listener>` and pings the
/// listener over the circuit.
pub async fn smoke_round(relay_addr: &Multiaddr, timeout: Duration) -> Result<RoundReport> {
    let relay_id = relay_peer(relay_addr)?;
    let mut listener = client_swarm()?;
    let mut dialer = client_swarm()?;
    let listener_id = *listener.local_peer_id();
    listener.listen_on(relay_addr.clone().with(Protocol::P2pCircuit))?;

    let start = Instant::now();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);

    let mut reserved_in: Option<Duration> = None;
    let mut reservation_addrs: Vec<Multiaddr> = Vec::new();
    let mut observed: Option<Multiaddr> = None;
    let mut dialing = false;
    loop {
        tokio::select! {
            _ = &mut deadline => bail!(
                "timed out after {timeout:?} (reserved: {}, reservation addrs: {reservation_addrs:?}, dialing: {dialing})",
                reserved_in.is_some()
            ),
            ev = listener.select_next_some() => match ev {
                SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                    relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
                )) => {
                    if relay_peer_id != relay_id {
                        bail!("reservation from unexpected relay {relay_peer_id}");
                    }
                    reserved_in = Some(start.elapsed());
                }
                SwarmEvent::NewListenAddr { address, .. } if is_relayed(&address) => reservation_addrs.push(address),
                SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                    if peer_id == relay_id =>
                {
                    observed = Some(info.observed_addr);
                }
                SwarmEvent::ListenerClosed { reason, .. } => bail!("reservation listener closed: {reason:?}"),
                SwarmEvent::OutgoingConnectionError { error, .. } => bail!("listener could not reach the relay: {error}"),
                _ => {}
            },
            ev = dialer.select_next_some() => match ev {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }))
                    if peer == listener_id =>
                {
                    return Ok(RoundReport {
                        reserved_in: reserved_in.unwrap_or_default(),
                        reservation_addrs,
                        observed,
                        circuit_rtt: rtt,
                    });
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } if peer_id == listener_id => {
                    if !is_relayed(endpoint.get_remote_address()) {
                        bail!("unexpected direct connection to the listener: {}", endpoint.get_remote_address());
                    }
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => bail!("dial through the relay failed: {error}"),
                _ => {}
            },
        }
        if !dialing && reserved_in.is_some() && !reservation_addrs.is_empty() {
            dialing = true;
            dialer.dial(relay_addr.clone().with(Protocol::P2pCircuit).with(Protocol::P2p(listener_id)))?;
        }
    }
}

/// Reserves on the relay with a fresh identity, prints the reservation, and then keeps the
/// connection (and so the reservation) up until the process is stopped: to check by hand what the
/// relay does with reservations whose holder disappears.
pub async fn reserve_and_hold(relay_addr: &Multiaddr) -> Result<()> {
    let mut listener = client_swarm()?;
    println!("holder {} reserving on {relay_addr}", listener.local_peer_id());
    listener.listen_on(relay_addr.clone().with(Protocol::P2pCircuit))?;
    loop {
        match listener.select_next_some().await {
            SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(e)) => println!("relay client: {e:?}"),
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                println!("connection to {peer_id} closed: {cause:?}")
            }
            SwarmEvent::ListenerClosed { reason, .. } => bail!("reservation listener closed: {reason:?}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{listen_kind, quic_addr, tcp_addr, with_peer, ListenKind};
    use std::net::Ipv4Addr;

    /// A relay on loopback (external addresses = its listen addresses), then reserve + circuit +
    /// ping through it over TCP and over QUIC, twice each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserve_and_relay_over_tcp_and_quic() {
        let mut relay = relay_swarm().unwrap();
        let relay_id = *relay.local_peer_id();
        relay.listen_on(tcp_addr(Ipv4Addr::LOCALHOST, 0)).unwrap();
        relay.listen_on(quic_addr(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let (mut tcp, mut quic) = (None, None);
        while tcp.is_none() || quic.is_none() {
            if let SwarmEvent::NewListenAddr { address, .. } = relay.select_next_some().await {
                match listen_kind(&address) {
                    Some(ListenKind::Tcp(_)) => tcp = Some(address.clone()),
                    Some(ListenKind::Quic(_)) => quic = Some(address.clone()),
                    None => {}
                }
                relay.add_external_address(address);
            }
        }
        let (tcp, quic) = (with_peer(tcp.unwrap(), relay_id), with_peer(quic.unwrap(), relay_id));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let driver = tokio::spawn(async move {
            loop {
                if let SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(relay::Event::ReservationReqAccepted {
                    ..
                })) = relay.select_next_some().await
                {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        for addr in [&tcp, &quic, &tcp, &quic] {
            let r = smoke_round(addr, Duration::from_secs(20)).await.unwrap_or_else(|e| panic!("{addr}: {e:#}"));
            // the reservation advertises both of the relay's external addresses
            let s: Vec<String> = r.reservation_addrs.iter().map(|a| a.to_string()).collect();
            assert!(s.iter().any(|a| a.starts_with(&format!("{tcp}/p2p-circuit"))), "{s:?}");
            assert!(s.iter().any(|a| a.starts_with(&format!("{quic}/p2p-circuit"))), "{s:?}");
            assert!(r.observed.is_some(), "identify gave the client its observed address");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        driver.abort();
    }
}

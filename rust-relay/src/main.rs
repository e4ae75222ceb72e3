//! holepunch-relay: a Circuit Relay v2 server for the holepunch test cluster.
//!
//! Listens on TCP (noise + yamux) and QUIC v1, advertises `/ip4/<own ip>/...` as its external
//! addresses (so reservations carry them), SETs `RELAY_TCP_ADDRESS` / `RELAY_QUIC_ADDRESS` in Redis,
//! prints `relay ready` on stderr, and serves until SIGTERM / SIGINT.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use futures::StreamExt;
use holepunch_relay::node::{relay_swarm, RelayBehaviourEvent as BehaviourEvent};
use holepunch_relay::{
    first_interface_ipv4, listen_kind, quic_addr, redis, tcp_addr, with_peer, ListenKind, Settings, KEY_QUIC, KEY_TCP,
};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, ping, relay, Multiaddr, PeerId};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

fn main() -> ExitCode {
    init_logging();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holepunch-relay: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holepunch-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(filter).init();
}

async fn run(settings: Settings) -> Result<()> {
    let ip: Ipv4Addr = match settings.public_ip {
        Some(ip) => ip,
        None => first_interface_ipv4()?,
    };

    let mut swarm = relay_swarm()?;
    let peer_id: PeerId = *swarm.local_peer_id();
    info!(%peer_id, %ip, "starting relay");

    let port = settings.listen_port;
    swarm.listen_on(tcp_addr(Ipv4Addr::UNSPECIFIED, port)).context("listen on TCP")?;
    swarm.listen_on(quic_addr(Ipv4Addr::UNSPECIFIED, port)).context("listen on QUIC")?;

    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    let (mut tcp_port, mut quic_port) = (None::<u16>, None::<u16>);
    let mut publish: Option<tokio::task::JoinHandle<Result<(Multiaddr, Multiaddr)>>> = None;
    let mut published = false;

    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            done = async { publish.as_mut().unwrap().await }, if publish.is_some() => {
                publish = None;
                let (t, q) = done.context("publish task")??;
                published = true;
                info!(tcp = %t, quic = %q, "published to redis {}", settings.redis_addr);
                eprintln!("relay ready");
            }
            event = swarm.select_next_some() => {
                match event {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        info!(%address, "listening");
                        match listen_kind(&address) {
                            Some(ListenKind::Tcp(p)) => tcp_port = Some(p),
                            Some(ListenKind::Quic(p)) => quic_port = Some(p),
                            None => {}
                        }
                        if let (Some(tp), Some(qp), false, None) = (tcp_port, quic_port, published, publish.as_ref()) {
                            let t = tcp_addr(ip, tp);
                            let q = quic_addr(ip, qp);
                            swarm.add_external_address(t.clone());
                            swarm.add_external_address(q.clone());
                            let (t, q) = (with_peer(t, peer_id), with_peer(q, peer_id));
                            let (redis_addr, deadline) = (settings.redis_addr.clone(), settings.redis_timeout);
                            publish = Some(tokio::spawn(async move {
                                let mut c = redis::Client::connect_with_deadline(&redis_addr, deadline).await?;
                                c.set(KEY_TCP, &t.to_string()).await?;
                                c.set(KEY_QUIC, &q.to_string()).await?;
                                Ok((t, q))
                            }));
                        }
                    }
                    SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        anyhow::bail!("listener on {addresses:?} closed: {reason:?}");
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                        tracing::debug!(%peer_id, remote = %endpoint.get_remote_address(), num_established, "connection established");
                    }
                    SwarmEvent::ConnectionClosed { peer_id, endpoint, cause, .. } => {
                        tracing::debug!(%peer_id, remote = %endpoint.get_remote_address(), ?cause, "connection closed");
                    }
                    SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                        tracing::debug!(remote = %send_back_addr, %error, "incoming connection failed");
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => log_relay_event(e),
                    // A test's peers vanish with their NAT router, often without a FIN: a TCP
                    // connection that holds a reservation would stay up until the reservation
                    // expires (an hour). Ping runs every 15 s with a 20 s timeout, and libp2p reports
                    // the second failure in a row (a timeout, or a stream that could not be opened):
                    // close the connection then, which ends its reservation and circuits.
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, connection, result: Err(failure) })) => {
                        if matches!(failure, ping::Failure::Unsupported) {
                            tracing::debug!(%peer, "peer does not support ping");
                        } else {
                            info!(%peer, %failure, "ping failed twice: closing the connection");
                            swarm.close_connection(connection);
                        }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        tracing::debug!(%peer_id, agent = %info.agent_version, observed = %info.observed_addr, "identified");
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(p) = publish {
        p.abort();
    }
    info!("relay stopped");
    Ok(())
}

#[allow(deprecated)]
fn log_relay_event(e: relay::Event) {
    use relay::Event::*;
    match e {
        ReservationReqAccepted { src_peer_id, renewed } => info!(peer = %src_peer_id, renewed, "reservation accepted"),
        ReservationReqDenied { src_peer_id, status } => warn!(peer = %src_peer_id, ?status, "reservation denied"),
        ReservationClosed { src_peer_id } => info!(peer = %src_peer_id, "reservation closed"),
        ReservationTimedOut { src_peer_id } => info!(peer = %src_peer_id, "reservation timed out"),
        CircuitReqAccepted { src_peer_id, dst_peer_id } => {
            info!(src = %src_peer_id, dst = %dst_peer_id, "circuit accepted")
        }
        CircuitReqDenied { src_peer_id, dst_peer_id, status } => {
            warn!(src = %src_peer_id, dst = %dst_peer_id, ?status, "circuit denied")
        }
        CircuitClosed { src_peer_id, dst_peer_id, error } => {
            info!(src = %src_peer_id, dst = %dst_peer_id, error = ?error, "circuit closed")
        }
        StatusChanged { status } => info!(?status, "relay status"),
        other => warn!(event = ?other, "relay"),
    }
}

//! Hole-punch interop test client on rust-libp2p (see ../README.md and impl/README.md).
//!
//! MODE=listen: reserve a slot on the relay, publish our peer id, stay up.
//! MODE=dial:   dial the listener through the relay, wait for the DCUtR upgrade to a direct
//!              connection, ping over that direct connection and print the RTT as JSON (last line).
//!
//! One source for every libp2p version: each version folder's Cargo.toml pins the crate and
//! selects the API generation it has with one cargo feature (`api-0-52`, `api-0-53`, `api-0-54`
//! for 0.54 and later); `#[cfg(feature = ...)]` marks the few lines where the API differs.

#[cfg(not(any(feature = "api-0-52", feature = "api-0-53", feature = "api-0-54")))]
compile_error!("Cargo.toml must select the API generation of its libp2p: feature api-0-52, api-0-53 or api-0-54");
#[cfg(any(
    all(feature = "api-0-52", feature = "api-0-53"),
    all(feature = "api-0-52", feature = "api-0-54"),
    all(feature = "api-0-53", feature = "api-0-54")
))]
compile_error!("Cargo.toml selects more than one API generation (api-0-52, api-0-53, api-0-54): keep one");

mod redis;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{dcutr, identify, identity, noise, ping, relay, tcp, tls, yamux, Multiaddr, PeerId, Swarm};
use tokio::time::Instant;
use tracing::{info, warn};

/// Default overall deadline of the dialer (and of the listener's set-up), in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 90;

/// After a failed hole-punch attempt, how long the listener (which drives DCUtR's retries and
/// starts the next attempt at once) has to start another before the punch has failed.
const PUNCH_RETRY_GRACE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Dial,
    Listen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Quic,
}

/// The secure channel a TCP connection to the peer uses (SECURE_CHANNEL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecureChannel {
    Noise,
    Tls,
}

struct Config {
    mode: Mode,
    transport: Transport,
    secure_channel: SecureChannel,
    redis_addr: String,
    test_key: String,
    timeout: Duration,
}

impl Config {
    fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).map_err(|_| anyhow!("environment variable {name} is not set"));
        let mode = match var("MODE")?.as_str() {
            "dial" => Mode::Dial,
            "listen" => Mode::Listen,
            other => bail!("MODE must be dial or listen, got {other:?}"),
        };
        let transport = match var("TRANSPORT")?.as_str() {
            "tcp" => Transport::Tcp,
            "quic" | "quic-v1" => Transport::Quic,
            other => bail!("TRANSPORT must be tcp or quic, got {other:?}"),
        };
        // Unset means the default (noise, yamux); QUIC brings its own TLS and streams.
        let secure_channel = match std::env::var("SECURE_CHANNEL").unwrap_or_default().as_str() {
            "" | "noise" => SecureChannel::Noise,
            "tls" => SecureChannel::Tls,
            other => bail!("SECURE_CHANNEL {other:?} is not supported (this client supports noise, tls)"),
        };
        match std::env::var("MUXER").unwrap_or_default().as_str() {
            "" | "yamux" => {}
            // rust-libp2p's facade dropped mplex before 0.52 (libp2p-mplex is out of tree).
            other => bail!("MUXER {other:?} is not supported (this client supports yamux)"),
        }
        let redis_addr = var("REDIS_ADDR")?;
        let test_key = std::env::var("TEST_KEY").unwrap_or_default();
        let timeout = match std::env::var("CLIENT_TIMEOUT_SECS") {
            Ok(s) => Duration::from_secs(s.trim().parse().context("CLIENT_TIMEOUT_SECS must be an integer")?),
            Err(_) => Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        };
        Ok(Self { mode, transport, secure_channel, redis_addr, test_key, timeout })
    }

    /// `<TEST_KEY>:<NAME>` (just `<NAME>` when TEST_KEY is empty, as upstream's runner did).
    fn key(&self, name: &str) -> String {
        if self.test_key.is_empty() {
            name.to_string()
        } else {
            format!("{}:{}", self.test_key, name)
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    dcutr: dcutr::Behaviour,
    ping: ping::Behaviour,
}

/// v0.52's SwarmEvent still carries the handler error type (dropped in v0.53).
#[cfg(feature = "api-0-52")]
#[allow(deprecated)]
type Event = SwarmEvent<BehaviourEvent, libp2p::swarm::THandlerErr<Behaviour>>;
#[cfg(not(feature = "api-0-52"))]
type Event = SwarmEvent<BehaviourEvent>;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(anyhow!("cannot start the tokio runtime: {e}")),
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ! {
    eprintln!("hole-punch-client: FAILED: {e:#}");
    std::process::exit(1);
}

async fn run() -> Result<()> {
    let cfg = Config::from_env()?;
    let deadline = Instant::now() + cfg.timeout;
    info!(mode = ?cfg.mode, transport = ?cfg.transport, secure_channel = ?cfg.secure_channel, redis = %cfg.redis_addr, test_key = %cfg.test_key, "starting");

    // SIGTERM/SIGINT end the process quickly (we may run as PID 1 without an init).
    tokio::spawn(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("hole-punch-client: stopped by signal");
        std::process::exit(143);
    });

    let mut redis = within(deadline, "connecting to Redis", redis::Conn::connect(&cfg.redis_addr)).await??;

    let relay_key = cfg.key(match cfg.transport {
        Transport::Tcp => "RELAY_TCP_ADDRESS",
        Transport::Quic => "RELAY_QUIC_ADDRESS",
    });
    let relay_addr: Multiaddr = redis
        .blpop(&relay_key, deadline)
        .await
        .with_context(|| format!("waiting for {relay_key}"))?
        .parse()
        .context("relay address is not a multiaddr")?;
    let relay_peer_id = match relay_addr.iter().last() {
        Some(Protocol::P2p(id)) => id,
        _ => bail!("relay address {relay_addr} does not end in /p2p/<peer id>"),
    };
    info!(%relay_addr, "relay address");

    let mut swarm = build_swarm(cfg.secure_channel)?;
    let local_peer_id = *swarm.local_peer_id();
    info!(%local_peer_id, "local peer id");

    // 1. Listen on all interfaces, port 0, on the chosen transport, so that the connections we
    //    dial (to the relay, and the hole punch) leave from the listening port.
    let listen_addr: Multiaddr = match cfg.transport {
        Transport::Tcp => "/ip4/0.0.0.0/tcp/0".parse()?,
        Transport::Quic => "/ip4/0.0.0.0/udp/0/quic-v1".parse()?,
    };
    swarm.listen_on(listen_addr.clone()).with_context(|| format!("listen on {listen_addr}"))?;
    loop {
        match next_event(&mut swarm, deadline, "listening on the local address").await? {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                // One address is enough; the transport knows all of them for port reuse.
                break;
            }
            SwarmEvent::ListenerClosed { reason, .. } => bail!("local listener closed: {reason:?}"),
            SwarmEvent::ListenerError { error, .. } => bail!("local listener error: {error}"),
            _ => {}
        }
    }
    // Give the transport a moment to report every interface address.
    drain_for(&mut swarm, Duration::from_millis(200)).await;

    // 2. Connect to the relay and wait until identify told us the address it sees us at
    //    (our NAT mapping: the hole-punch candidate) and we told it ours.
    let relay_dial = DialOpts::unknown_peer_id().address(relay_addr.clone()).build();
    let relay_conn = relay_dial.connection_id();
    swarm.dial(relay_dial).context("dial the relay")?;
    let (mut learned_observed, mut told_relay) = (false, false);
    while !(learned_observed && told_relay) {
        match next_event(&mut swarm, deadline, "identify with the relay").await? {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } if peer_id == relay_peer_id => {
                info!(address = %endpoint.get_remote_address(), "connected to the relay");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } if connection_id == relay_conn => {
                bail!("cannot connect to the relay {relay_addr}: {error}");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == relay_peer_id => {
                bail!("connection to the relay closed during identify: {cause:?}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if peer_id == relay_peer_id =>
            {
                info!(observed = %info.observed_addr, "the relay observed us at");
                // v0.52: DCUtR offers only confirmed external addresses (from v0.53 on it takes
                // identify's candidates), so confirm the relay's observation of our NAT mapping.
                #[cfg(feature = "api-0-52")]
                swarm.add_external_address(info.observed_addr.clone());
                learned_observed = true;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Sent { peer_id, .. })) if peer_id == relay_peer_id => {
                told_relay = true;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Error { peer_id, error, .. }))
                if peer_id == relay_peer_id =>
            {
                bail!("identify with the relay failed: {error}");
            }
            _ => {}
        }
    }

    match cfg.mode {
        Mode::Listen => listen(&cfg, swarm, redis, relay_addr, relay_peer_id, deadline).await,
        Mode::Dial => dial(&cfg, swarm, redis, relay_addr, deadline).await,
    }
}

async fn listen(
    cfg: &Config,
    mut swarm: Swarm<Behaviour>,
    mut redis: redis::Conn,
    relay_addr: Multiaddr,
    relay_peer_id: PeerId,
    deadline: Instant,
) -> Result<()> {
    let circuit = relay_addr.with(Protocol::P2pCircuit);
    let circuit_listener = swarm.listen_on(circuit.clone()).with_context(|| format!("listen on {circuit}"))?;
    loop {
        match next_event(&mut swarm, deadline, "the relay reservation").await? {
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id: r,
                ..
            })) if r == relay_peer_id => {
                info!(%circuit, "reservation accepted");
                step("relay-reserved");
                break;
            }
            #[cfg(feature = "api-0-52")]
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(relay::client::Event::ReservationReqFailed {
                error, ..
            })) => {
                bail!("the relay refused the reservation: {error}");
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } if listener_id == circuit_listener => {
                bail!("the relay refused or dropped the reservation: {reason:?}");
            }
            SwarmEvent::ListenerError { listener_id, error } if listener_id == circuit_listener => {
                bail!("reservation failed: {error}");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == relay_peer_id => {
                bail!("connection to the relay closed before the reservation: {cause:?}");
            }
            _ => {}
        }
    }

    let id_key = cfg.key("LISTEN_CLIENT_PEER_ID");
    redis
        .rpush(&id_key, &swarm.local_peer_id().to_string())
        .await
        .with_context(|| format!("RPUSH {id_key}"))?;
    info!(key = %id_key, "published our peer id; waiting for the dialer");
    drop(redis);

    // Stay up until stopped, logging what happens.
    loop {
        let event = swarm.select_next_some().await;
        log_event(&event);
        match event {
            #[cfg(feature = "api-0-52")]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => info!("DCUtR: {e:?}"),
            #[cfg(not(feature = "api-0-52"))]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) => match result {
                Ok(id) => info!(%remote_peer_id, connection = ?id, "DCUtR: hole punch succeeded"),
                Err(e) => warn!(%remote_peer_id, "DCUtR: {e}"),
            },
            SwarmEvent::ListenerClosed { listener_id, reason, .. } if listener_id == circuit_listener => {
                warn!("relay reservation listener closed: {reason:?}");
            }
            _ => {}
        }
    }
}

async fn dial(
    cfg: &Config,
    mut swarm: Swarm<Behaviour>,
    mut redis: redis::Conn,
    relay_addr: Multiaddr,
    deadline: Instant,
) -> Result<()> {
    let id_key = cfg.key("LISTEN_CLIENT_PEER_ID");
    let remote: PeerId = redis
        .blpop(&id_key, deadline)
        .await
        .with_context(|| format!("waiting for {id_key}"))?
        .trim()
        .parse()
        .context("listener peer id is not a peer id")?;
    drop(redis);

    let target = relay_addr.with(Protocol::P2pCircuit).with(Protocol::P2p(remote));
    info!(%target, "dialing the listener through the relay");
    let opts = DialOpts::unknown_peer_id().address(target.clone()).build();
    let relayed_dial = opts.connection_id();
    let dialed = Instant::now();
    swarm.dial(opts).with_context(|| format!("dial {target}"))?;

    // Connections to the listener that do not go through a relay, with the RTTs seen on each.
    let mut direct: HashSet<ConnectionId> = HashSet::new();
    let mut rtts: HashMap<ConnectionId, Vec<Duration>> = HashMap::new();
    // From the relayed dial to the first direct connection.
    let mut to_direct: Option<Duration> = None;
    // Whether DCUtR reported success, and on which connection (v0.52's event names none: then
    // any direct connection to the listener counts).
    let mut punched = false;
    #[cfg_attr(feature = "api-0-52", allow(unused_mut))] // 0.52 never learns the connection
    let mut punched_connection: Option<ConnectionId> = None;
    // What went wrong so far, for the failure reason.
    let mut relayed_up = false;
    let mut last_problem: Option<String> = None;
    // When the last hole-punch attempt failed with no direct connection and none started since.
    let mut failed_at: Option<Instant> = None;

    loop {
        let grace_end = failed_at.map(|t| t + PUNCH_RETRY_GRACE).filter(|g| *g < deadline);
        let event = match next_event(&mut swarm, grace_end.unwrap_or(deadline), "the hole punch").await {
            Ok(event) => event,
            Err(_) if grace_end.is_some() => bail!(
                "the hole punch failed ({}) and the listener started no new attempt within {} s",
                last_problem.as_deref().unwrap_or("no reason given"),
                PUNCH_RETRY_GRACE.as_secs(),
            ),
            Err(e) => bail!(
                "{e} (relayed connection: {}; DCUtR succeeded: {}; direct connections: {}; last problem: {})",
                if relayed_up { "yes" } else { "no" },
                if punched { "yes" } else { "no" },
                direct.len(),
                last_problem.as_deref().unwrap_or("none"),
            ),
        };
        log_event(&event);
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } if peer_id == remote => {
                if is_relayed(&endpoint) {
                    if !relayed_up {
                        step("relayed-connection");
                    }
                    relayed_up = true;
                    info!(address = %endpoint.get_remote_address(), "relayed connection to the listener");
                } else {
                    info!(address = %endpoint.get_remote_address(), connection = ?connection_id, "direct connection to the listener");
                    if to_direct.is_none() {
                        to_direct = Some(dialed.elapsed());
                        step("direct-connection");
                    }
                    direct.insert(connection_id);
                    failed_at = None;
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } if peer_id == remote => {
                direct.remove(&connection_id);
                rtts.remove(&connection_id);
                if num_established == 0 {
                    bail!(
                        "the relayed connection to the listener closed with no direct one: the hole punch failed (last problem: {})",
                        last_problem.as_deref().unwrap_or("none"),
                    );
                }
            }
            // DCUtR's dial to the listener's addresses: a (new) hole-punch attempt
            SwarmEvent::Dialing { peer_id: Some(p), connection_id, .. } if p == remote && connection_id != relayed_dial => {
                failed_at = None;
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } if connection_id == relayed_dial => {
                bail!("dial through the relay failed: {error}");
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(p), error, .. } if p == remote => {
                last_problem = Some(format!("direct dial failed: {error}"));
                if direct.is_empty() {
                    failed_at = Some(Instant::now());
                }
            }
            #[cfg(feature = "api-0-52")]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event::DirectConnectionUpgradeSucceeded {
                remote_peer_id,
            })) if remote_peer_id == remote => {
                info!("DCUtR: hole punch succeeded");
                punched = true;
            }
            #[cfg(feature = "api-0-52")]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event::DirectConnectionUpgradeFailed {
                remote_peer_id,
                error,
            })) if remote_peer_id == remote => {
                // The listener's side drives the retries: wait PUNCH_RETRY_GRACE for the next one.
                warn!("DCUtR attempt failed: {error}");
                last_problem = Some(format!("DCUtR: {error}"));
                if direct.is_empty() {
                    failed_at = Some(Instant::now());
                }
            }
            #[cfg(feature = "api-0-52")]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => info!("DCUtR: {e:?}"),
            #[cfg(not(feature = "api-0-52"))]
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) if remote_peer_id == remote => {
                match result {
                    Ok(id) => {
                        info!(connection = ?id, "DCUtR: hole punch succeeded");
                        punched = true;
                        punched_connection = Some(id);
                    }
                    // The listener's side drives the retries: wait PUNCH_RETRY_GRACE for the next one.
                    Err(e) => {
                        warn!("DCUtR attempt failed: {e}");
                        last_problem = Some(format!("DCUtR: {e}"));
                        if direct.is_empty() {
                            failed_at = Some(Instant::now());
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, connection, result })) if peer == remote => {
                match result {
                    Ok(rtt) if direct.contains(&connection) => {
                        info!(connection = ?connection, ?rtt, "ping over the direct connection");
                        rtts.entry(connection).or_default().push(rtt);
                    }
                    Ok(rtt) => info!(connection = ?connection, ?rtt, "ping over the relayed connection (not reported)"),
                    Err(e) => {
                        warn!(connection = ?connection, "ping failed: {e}");
                        last_problem = Some(format!("ping failed: {e}"));
                    }
                }
            }
            _ => {}
        }

        // Report once PING_SAMPLES pings went over a direct connection: the one DCUtR punched if
        // it has them, else any other direct connection to the listener. DCUtR need not have
        // reported success: when the listener's punch dial is the one that gets through (a
        // js-libp2p listener over QUIC), the direct connection is an inbound one that our DCUtR
        // never dialed, yet it exists only thanks to the punch (the listener is behind its NAT).
        if punched || !direct.is_empty() {
            let enough = |c: &ConnectionId| rtts.get(c).filter(|v| v.len() >= PING_SAMPLES);
            let samples = punched_connection
                .and_then(|c| enough(&c))
                .or_else(|| direct.iter().find_map(|c| enough(c)));
            if let Some(samples) = samples {
                step("ping");
                println!("{}", result_line(samples, to_direct.unwrap_or_else(|| dialed.elapsed())));
                return Ok(());
            }
        }
    }
}

/// Pings over the direct connection before the result: its RTT is their median.
const PING_SAMPLES: usize = 3;
/// How often the ping behaviour pings each connection (the first ping goes at once).
const PING_INTERVAL: Duration = Duration::from_millis(250);

/// Tell the harness how far the test got: `holepunch-step: NAME` on stderr (impl/README.md).
fn step(name: &str) {
    eprintln!("holepunch-step: {name}");
}

/// A duration in milliseconds, to a tenth.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The dialer's last stdout line: the median RTT in whole milliseconds (the contract's field),
/// every sample, and the time from the relayed dial to the direct connection.
fn result_line(rtts: &[Duration], to_direct: Duration) -> String {
    let samples: Vec<f64> = rtts.iter().map(|d| millis(*d)).collect();
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let list: Vec<String> = samples.iter().map(|v| format!("{v:.1}")).collect();
    format!(
        "{{\"rtt_to_holepunched_peer_millis\": {}, \"time_to_direct_ms\": {:.1}, \"rtt_samples_millis\": [{}]}}",
        median.round() as u64,
        millis(to_direct),
        list.join(", ")
    )
}

/// The TCP transport's options. v0.52 and v0.53: port reuse must be asked for, so that dials
/// leave from the listening port.
#[cfg(any(feature = "api-0-52", feature = "api-0-53"))]
fn tcp_config() -> tcp::Config {
    tcp::Config::default().port_reuse(true).nodelay(true)
}

/// Since v0.54 the dial decides port reuse (PortUse::Reuse by default): no flag here.
#[cfg(not(any(feature = "api-0-52", feature = "api-0-53")))]
fn tcp_config() -> tcp::Config {
    tcp::Config::new().nodelay(true)
}

/// The rest of the swarm once its TCP transport is chosen (the builder's types differ by
/// secure channel, so each choice finishes the chain itself).
macro_rules! finish_swarm {
    ($builder:expr, $security:expr) => {
        $builder
            .with_quic()
            .with_relay_client($security, yamux::Config::default)?
            .with_behaviour(|key, relay_client| Behaviour {
                relay_client,
                identify: identify::Behaviour::new(identify::Config::new("/hole-punch-interop/1.0.0".into(), key.public())),
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build()
    };
}

/// TCP with the chosen secure channel first and noise after it: the relay speaks noise only, so
/// a peer that asks for tls still reaches it, and two tls peers negotiate tls with each other.
/// Relayed connections to the peer offer the same. The muxer is yamux.
fn build_swarm(secure_channel: SecureChannel) -> Result<Swarm<Behaviour>> {
    let key = identity::Keypair::generate_ed25519();
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    let swarm = match secure_channel {
        SecureChannel::Noise => finish_swarm!(
            builder.with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)?,
            noise::Config::new
        ),
        SecureChannel::Tls => finish_swarm!(
            builder.with_tcp(tcp_config(), (tls::Config::new, noise::Config::new), yamux::Config::default)?,
            (tls::Config::new, noise::Config::new)
        ),
    };
    Ok(swarm)
}

fn is_relayed(endpoint: &ConnectedPoint) -> bool {
    endpoint.get_remote_address().iter().any(|p| p == Protocol::P2pCircuit)
}

fn log_event(event: &Event) {
    match event {
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => warn!(?peer_id, "outgoing connection failed: {error}"),
        SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
            warn!(%send_back_addr, "incoming connection failed: {error}")
        }
        SwarmEvent::ConnectionClosed { peer_id, endpoint, cause, .. } => {
            info!(%peer_id, address = %endpoint.get_remote_address(), ?cause, "connection closed")
        }
        SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => info!("relay client: {e:?}"),
        _ => {}
    }
}

/// The next swarm event, or an error naming `what` when the deadline passes first.
async fn next_event(
    swarm: &mut Swarm<Behaviour>,
    deadline: Instant,
    what: &str,
) -> Result<Event> {
    within(deadline, what, swarm.select_next_some()).await
}

async fn within<T>(deadline: Instant, what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| anyhow!("timed out waiting for {what}"))
}

/// Let the swarm run for `d`, ignoring its events.
async fn drain_for(swarm: &mut Swarm<Behaviour>, d: Duration) {
    let until = Instant::now() + d;
    while let Ok(event) = tokio::time::timeout_at(until, swarm.select_next_some()).await {
        if let SwarmEvent::NewListenAddr { address, .. } = event {
            info!(%address, "listening");
        }
    }
}

//! Shared pieces of the holepunch relay: settings from the environment, the relay limits,
//! the relay's own address, and a minimal Redis (RESP2) client.
//!
//! The binaries are `holepunch-relay` (src/main.rs) and `relay-smoke` (src/bin/relay-smoke.rs).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use libp2p::multiaddr::Protocol;
use libp2p::{relay, Multiaddr, PeerId};

pub mod node;
pub mod redis;

/// Redis key under which the relay publishes its TCP multiaddr (with `/p2p/<peer id>`).
pub const KEY_TCP: &str = "RELAY_TCP_ADDRESS";
/// Redis key under which the relay publishes its QUIC multiaddr (with `/p2p/<peer id>`).
pub const KEY_QUIC: &str = "RELAY_QUIC_ADDRESS";

/// Settings of the relay, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `REDIS_ADDR`: `host:port` of the Redis the relay publishes its addresses to.
    pub redis_addr: String,
    /// `LISTEN_PORT` (default 4001): TCP and UDP (QUIC) port.
    pub listen_port: u16,
    /// `PUBLIC_IP`: the address to advertise; default: first non-loopback IPv4 of an interface.
    pub public_ip: Option<Ipv4Addr>,
    /// `REDIS_TIMEOUT_SECS` (default 60): how long to keep retrying Redis at start-up.
    pub redis_timeout: Duration,
}

impl Settings {
    /// Reads the settings through `get` (normally `std::env::var`), so tests need no real environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let nonempty = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let redis_addr = nonempty("REDIS_ADDR").ok_or_else(|| anyhow!("REDIS_ADDR (host:port) is not set"))?;
        if !redis_addr.contains(':') {
            bail!("REDIS_ADDR must be host:port, got {redis_addr:?}");
        }
        let listen_port = match nonempty("LISTEN_PORT") {
            None => 4001,
            Some(v) => v.parse::<u16>().with_context(|| format!("LISTEN_PORT {v:?} is not a port"))?,
        };
        let public_ip = match nonempty("PUBLIC_IP") {
            None => None,
            Some(v) => Some(v.parse::<Ipv4Addr>().with_context(|| format!("PUBLIC_IP {v:?} is not an IPv4 address"))?),
        };
        let redis_timeout = match nonempty("REDIS_TIMEOUT_SECS") {
            None => Duration::from_secs(60),
            Some(v) => Duration::from_secs(v.parse::<u64>().with_context(|| format!("REDIS_TIMEOUT_SECS {v:?}"))?),
        };
        Ok(Settings { redis_addr, listen_port, public_ip, redis_timeout })
    }

    pub fn from_env() -> Result<Settings> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }
}

/// Relay limits for a relay that serves many tests over a long life.
///
/// Every test peer reaches the relay from a NAT router's public address, and a busy test host runs
/// many tests at once, so there are no rate limiters (libp2p's defaults limit each IP to one
/// reservation and one circuit a minute), and the counts are in the thousands. A hole-punch test
/// uses its circuit for identify, DCUtR and perhaps a ping: minutes and megabytes are plenty.
pub fn relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 16_384,
        max_reservations_per_peer: 16,
        reservation_duration: Duration::from_secs(60 * 60),
        reservation_rate_limiters: Vec::new(),
        max_circuits: 16_384,
        max_circuits_per_peer: 64,
        max_circuit_duration: Duration::from_secs(10 * 60),
        max_circuit_bytes: 64 << 20,
        circuit_src_rate_limiters: Vec::new(),
    }
}

/// The first non-loopback, non-link-local IPv4 address of an interface that is up.
pub fn first_interface_ipv4() -> Result<Ipv4Addr> {
    interface_ipv4s()?
        .into_iter()
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
        .ok_or_else(|| anyhow!("no non-loopback IPv4 address on any interface (set PUBLIC_IP)"))
}

/// IPv4 addresses of the interfaces that are up, in the order `getifaddrs(3)` lists them.
pub fn interface_ipv4s() -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free with freeifaddrs below; we only read it.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error()).context("getifaddrs");
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            if up && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// `/ip4/<ip>/tcp/<port>`
pub fn tcp_addr(ip: Ipv4Addr, port: u16) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ip4(ip)).with(Protocol::Tcp(port))
}

/// `/ip4/<ip>/udp/<port>/quic-v1`
pub fn quic_addr(ip: Ipv4Addr, port: u16) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ip4(ip)).with(Protocol::Udp(port)).with(Protocol::QuicV1)
}

/// Appends `/p2p/<peer>` unless the address already ends with a `/p2p` part.
pub fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr,
        _ => addr.with(Protocol::P2p(peer)),
    }
}

/// Which transport a listen address belongs to, and its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenKind {
    Tcp(u16),
    Quic(u16),
}

/// Classifies `/ip4/../tcp/P` and `/ip4/../udp/P/quic-v1` (other addresses: `None`).
pub fn listen_kind(addr: &Multiaddr) -> Option<ListenKind> {
    let parts: Vec<Protocol> = addr.iter().collect();
    match parts.as_slice() {
        [Protocol::Ip4(_), Protocol::Tcp(p)] => Some(ListenKind::Tcp(*p)),
        [Protocol::Ip4(_), Protocol::Udp(p), Protocol::QuicV1] => Some(ListenKind::Quic(*p)),
        _ => None,
    }
}

/// Resolves `host:port` (an IP or a name) to socket addresses.
pub async fn resolve(host_port: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(host_port).await.with_context(|| format!("resolving {host_port}"))?.collect();
    if addrs.is_empty() {
        bail!("{host_port} resolves to no address");
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let s = Settings::from_lookup(lookup(&[("REDIS_ADDR", "11.11.0.2:6379")])).unwrap();
        assert_eq!(s.redis_addr, "11.11.0.2:6379");
        assert_eq!(s.listen_port, 4001);
        assert_eq!(s.public_ip, None);
        assert_eq!(s.redis_timeout, Duration::from_secs(60));

        let s = Settings::from_lookup(lookup(&[
            ("REDIS_ADDR", "redis:6379"),
            ("LISTEN_PORT", "4100"),
            ("PUBLIC_IP", "11.11.0.3"),
            ("REDIS_TIMEOUT_SECS", "5"),
        ]))
        .unwrap();
        assert_eq!(s.listen_port, 4100);
        assert_eq!(s.public_ip, Some(Ipv4Addr::new(11, 11, 0, 3)));
        assert_eq!(s.redis_timeout, Duration::from_secs(5));
        // An empty PUBLIC_IP means "not given".
        let s = Settings::from_lookup(lookup(&[("REDIS_ADDR", "a:1"), ("PUBLIC_IP", "")])).unwrap();
        assert_eq!(s.public_ip, None);
    }

    #[test]
    fn settings_errors() {
        assert!(Settings::from_lookup(lookup(&[])).is_err());
        assert!(Settings::from_lookup(lookup(&[("REDIS_ADDR", "no-port")])).is_err());
        assert!(Settings::from_lookup(lookup(&[("REDIS_ADDR", "a:1"), ("LISTEN_PORT", "70000")])).is_err());
        assert!(Settings::from_lookup(lookup(&[("REDIS_ADDR", "a:1"), ("PUBLIC_IP", "::1")])).is_err());
    }

    #[test]
    fn relay_limits_suit_a_long_lived_shared_relay() {
        let c = relay_config();
        assert!(c.reservation_rate_limiters.is_empty(), "no per-peer/per-IP reservation rate limits");
        assert!(c.circuit_src_rate_limiters.is_empty(), "no per-peer/per-IP circuit rate limits");
        assert!(c.max_reservations >= 1000 && c.max_circuits >= 1000);
        assert_eq!(c.reservation_duration, Duration::from_secs(3600));
        assert!(c.max_circuit_duration >= Duration::from_secs(120));
        assert!(c.max_circuit_bytes >= 1 << 20);
    }

    #[test]
    fn addresses() {
        let peer = PeerId::random();
        let ip = Ipv4Addr::new(11, 11, 0, 3);
        let t = with_peer(tcp_addr(ip, 4001), peer);
        assert_eq!(t.to_string(), format!("/ip4/11.11.0.3/tcp/4001/p2p/{peer}"));
        let q = with_peer(quic_addr(ip, 4001), peer);
        assert_eq!(q.to_string(), format!("/ip4/11.11.0.3/udp/4001/quic-v1/p2p/{peer}"));
        assert_eq!(with_peer(q.clone(), peer), q, "no second /p2p");
        assert_eq!(listen_kind(&tcp_addr(ip, 7)), Some(ListenKind::Tcp(7)));
        assert_eq!(listen_kind(&quic_addr(ip, 8)), Some(ListenKind::Quic(8)));
        assert_eq!(listen_kind(&t), None);
    }

    #[test]
    fn interface_addresses_include_loopback() {
        let ips = interface_ipv4s().unwrap();
        assert!(ips.contains(&Ipv4Addr::LOCALHOST), "{ips:?}");
        if let Ok(ip) = first_interface_ipv4() {
            assert!(!ip.is_loopback());
        }
    }
}

package main

// The libp2p parts: the relay host (TCP with noise and yamux, QUIC v1, identify, ping), the
// Circuit Relay v2 service with limits for a long-lived relay shared by many tests, and the
// addresses it advertises.

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// agentVersion is what identify tells peers: a client's log of the relay's identify names it.
const agentVersion = "holepunch-go-relay/0.1.0 (go-libp2p v0.51.0)"

// relayResources are the relay's limits, as rust-relay's relay_config(): every test peer reaches
// the relay from its NAT router's public address and a busy host runs many tests at once, so the
// counts are in the thousands (go-libp2p's defaults: 128 reservations, 8 per IP, 16 circuits per
// peer); a hole-punch test uses its circuit for identify, DCUtR and perhaps a ping, so 10 minutes
// and 64 MiB a circuit are plenty (the defaults, 2 minutes and 128 KiB, are tight under load).
// go-libp2p has no reservation or circuit rate limiter to turn off.
func relayResources() relay.Resources {
	r := relay.DefaultResources()
	r.Limit = &relay.RelayLimit{Duration: 10 * time.Minute, Data: 64 << 20}
	r.ReservationTTL = time.Hour
	r.MaxReservations = 16384
	r.MaxCircuits = 64 // per peer
	r.MaxReservationsPerIP = 1024
	r.MaxReservationsPerASN = 16384
	return r
}

// tcpAddr is /ip4/<ip>/tcp/<port>; quicAddr /ip4/<ip>/udp/<port>/quic-v1.
func tcpAddr(ip net.IP, port int) ma.Multiaddr {
	return ma.StringCast("/ip4/" + ip.String() + "/tcp/" + strconv.Itoa(port))
}

func quicAddr(ip net.IP, port int) ma.Multiaddr {
	return ma.StringCast("/ip4/" + ip.String() + "/udp/" + strconv.Itoa(port) + "/quic-v1")
}

// withPeer appends /p2p/<id>.
func withPeer(addr ma.Multiaddr, id peer.ID) string {
	return addr.String() + "/p2p/" + id.String()
}

// listenPorts finds the TCP port and the QUIC port among listen addresses (0: not found).
func listenPorts(addrs []ma.Multiaddr) (tcpPort, quicPort int) {
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_IP4); err != nil {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err == nil {
			if v, err := a.ValueForProtocol(ma.P_UDP); err == nil && len(a) == 3 {
				quicPort, _ = strconv.Atoi(v)
			}
			continue
		}
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil && len(a) == 2 {
			tcpPort, _ = strconv.Atoi(v)
		}
	}
	return tcpPort, quicPort
}

// advertised is the address factory: exactly /ip4/<ip>/tcp/<port> and
// /ip4/<ip>/udp/<port>/quic-v1 for the ports the host listens on, whatever interfaces it has.
// Identify and every reservation carry these (rust-relay adds the same two as its confirmed
// external addresses).
func advertised(ip net.IP) func([]ma.Multiaddr) []ma.Multiaddr {
	return func(listening []ma.Multiaddr) []ma.Multiaddr {
		tcpPort, quicPort := listenPorts(listening)
		var out []ma.Multiaddr
		if tcpPort != 0 {
			out = append(out, tcpAddr(ip, tcpPort))
		}
		if quicPort != 0 {
			out = append(out, quicAddr(ip, quicPort))
		}
		return out
	}
}

// newRelayHost is a host with a fresh Ed25519 identity listening on TCP (noise, yamux: what every
// client speaks to the relay, as with rust-relay) and QUIC v1 on port `port` of every interface,
// advertising `ip`. Identify (on in every go-libp2p host) tells each peer the address the relay
// observed it at, which a client behind a NAT needs to hole punch; ping is on. No resource
// manager limits (the relay's own limits are relayResources), no relay client, no NAT discovery.
func newRelayHost(ip net.IP, port int) (host.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	return libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(
			"/ip4/0.0.0.0/tcp/"+strconv.Itoa(port),
			"/ip4/0.0.0.0/udp/"+strconv.Itoa(port)+"/quic-v1",
		),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.AddrsFactory(advertised(ip)),
		libp2p.DisableIdentifyAddressDiscovery(), // it knows its address; peers need not tell it
		libp2p.ForceReachabilityPublic(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(true),
		libp2p.UserAgent(agentVersion),
	)
}

// startRelay runs the Circuit Relay v2 (hop) service on h. Reservations carry exactly the
// host's advertised addresses (go-libp2p's default filter would drop any it deems non-public).
func startRelay(h host.Host, events *relayLog) (*relay.Relay, error) {
	return relay.New(h,
		relay.WithResources(relayResources()),
		relay.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true }),
		relay.WithACL(events),
		relay.WithMetricsTracer(events),
	)
}

// relayLog logs the relay's reservations and circuits (stderr) and counts them. It is the relay
// service's ACL (it allows everything; it is told the peers of each request) and its metrics
// tracer (it is told each request's outcome).
type relayLog struct {
	reservations atomic.Int64 // accepted (new or renewed)
	circuits     atomic.Int64 // accepted
	denied       atomic.Int64 // reservations and circuits refused
}

var (
	_ relay.ACLFilter     = (*relayLog)(nil)
	_ relay.MetricsTracer = (*relayLog)(nil)
)

func (l *relayLog) AllowReserve(p peer.ID, a ma.Multiaddr) bool {
	logf("reservation request from %s at %s", p, a)
	return true
}

func (l *relayLog) AllowConnect(src peer.ID, srcAddr ma.Multiaddr, dest peer.ID) bool {
	logf("circuit request %s (at %s) -> %s", src, srcAddr, dest)
	return true
}

func (l *relayLog) RelayStatus(enabled bool) { logf("relay service enabled: %t", enabled) }
func (l *relayLog) ConnectionOpened()        {}
func (l *relayLog) ConnectionClosed(d time.Duration) {
	logf("circuit closed after %s", d.Round(time.Millisecond))
}

func (l *relayLog) ConnectionRequestHandled(status pbv2.Status) {
	if status == pbv2.Status_OK {
		l.circuits.Add(1)
		logf("circuit accepted")
		return
	}
	l.denied.Add(1)
	logf("circuit denied: %s", status)
}

func (l *relayLog) ReservationAllowed(isRenewal bool) {
	l.reservations.Add(1)
	logf("reservation accepted (renewed: %t)", isRenewal)
}

func (l *relayLog) ReservationClosed(cnt int) {
	if cnt > 0 {
		logf("%d reservation(s) closed", cnt)
	}
}

func (l *relayLog) ReservationRequestHandled(status pbv2.Status) {
	if status != pbv2.Status_OK {
		l.denied.Add(1)
		logf("reservation denied: %s", status)
	}
}

func (l *relayLog) BytesTransferred(int) {}

// logConnections logs every connection the relay gains or loses (peer, remote address).
func logConnections(h host.Host) {
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			logf("connection from %s at %s", c.RemotePeer(), c.RemoteMultiaddr())
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			logf("connection to %s at %s closed", c.RemotePeer(), c.RemoteMultiaddr())
		},
	})
}

func describe(h host.Host) string {
	return fmt.Sprintf("peer id %s, listening on %v, advertising %v", h.ID(),
		h.Network().ListenAddresses(), h.Addrs())
}

// holepunch-go-relay: a Circuit Relay v2 server for the holepunch test cluster, on go-libp2p.
//
// The same contract as rust-relay (its README.md): listens on TCP (noise + yamux) and QUIC v1,
// advertises /ip4/<own ip>/... (so reservations carry those addresses), SETs
// RELAY_TCP_ADDRESS / RELAY_QUIC_ADDRESS in the Redis at REDIS_ADDR, prints `relay ready` on
// stderr, and serves until SIGTERM / SIGINT (exit 0). Bad settings exit 2, any other failure 1.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

func main() {
	s, err := settingsFromEnv()
	if err != nil {
		logf("holepunch-go-relay: %v", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, s); err != nil {
		logf("holepunch-go-relay: %v", err)
		os.Exit(1)
	}
}

// run starts the relay, publishes its addresses and serves until ctx ends.
func run(ctx context.Context, s settings) error {
	ip := s.publicIP
	if ip == nil {
		var err error
		if ip, err = firstInterfaceIPv4(); err != nil {
			return err
		}
	}
	r, err := start(ip, s.listenPort)
	if err != nil {
		return err
	}
	defer r.close()
	logf("starting relay: %s (%s)", describe(r.host), agentVersion)

	c, err := connectRedis(ctx, s.redisAddr, s.redisTimeout)
	if err != nil {
		return err
	}
	err = publish(c, r.tcp, r.quic)
	c.Close()
	if err != nil {
		return err
	}
	logf("published to redis %s: %s=%s %s=%s", s.redisAddr, keyTCP, r.tcp, keyQUIC, r.quic)
	fmt.Fprintln(os.Stderr, "relay ready")

	<-ctx.Done()
	logf("signal: shutting down (%d reservations, %d circuits accepted, %d denied)",
		r.events.reservations.Load(), r.events.circuits.Load(), r.events.denied.Load())
	return nil
}

// relayNode is a started relay: its host, its service, and the two addresses it publishes.
type relayNode struct {
	host      host.Host
	service   *relay.Relay
	events    *relayLog
	tcp, quic string // /ip4/<ip>/tcp/<port>/p2p/<id>, /ip4/<ip>/udp/<port>/quic-v1/p2p/<id>
}

func (r *relayNode) close() {
	_ = r.service.Close()
	_ = r.host.Close()
}

// start brings the relay host and service up on `port` (0: any free port), advertising ip.
func start(ip net.IP, port int) (*relayNode, error) {
	h, err := newRelayHost(ip, port)
	if err != nil {
		return nil, fmt.Errorf("relay host: %w", err)
	}
	tcpPort, quicPort := listenPorts(h.Network().ListenAddresses())
	if tcpPort == 0 || quicPort == 0 {
		h.Close()
		return nil, fmt.Errorf("not listening on both TCP and QUIC: %v", h.Network().ListenAddresses())
	}
	events := &relayLog{}
	service, err := startRelay(h, events)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("relay service: %w", err)
	}
	logConnections(h)
	return &relayNode{host: h, service: service, events: events,
		tcp: withPeer(tcpAddr(ip, tcpPort), h.ID()), quic: withPeer(quicAddr(ip, quicPort), h.ID())}, nil
}

// publish SETs the relay's two addresses, the keys worker/services.py waits for.
func publish(c *redisConn, tcp, quic string) error {
	if err := c.Set(keyTCP, tcp); err != nil {
		return err
	}
	return c.Set(keyQUIC, quic)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000")+" "+strings.TrimRight(format, "\n")+"\n", args...)
}

package main

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

func lookup(pairs map[string]string) func(string) string {
	return func(k string) string { return pairs[k] }
}

func TestSettingsDefaultsAndOverrides(t *testing.T) {
	s, err := settingsFrom(lookup(map[string]string{"REDIS_ADDR": "11.11.0.2:6379"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.redisAddr != "11.11.0.2:6379" || s.listenPort != 4001 || s.publicIP != nil || s.redisTimeout != time.Minute {
		t.Fatalf("defaults: %+v", s)
	}
	s, err = settingsFrom(lookup(map[string]string{"REDIS_ADDR": "redis:6379", "LISTEN_PORT": "4100",
		"PUBLIC_IP": "11.11.0.3", "REDIS_TIMEOUT_SECS": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.listenPort != 4100 || !s.publicIP.Equal(net.IPv4(11, 11, 0, 3)) || s.redisTimeout != 5*time.Second {
		t.Fatalf("overrides: %+v", s)
	}
	if s, _ = settingsFrom(lookup(map[string]string{"REDIS_ADDR": "a:1", "PUBLIC_IP": " "})); s.publicIP != nil {
		t.Fatalf("an empty PUBLIC_IP means not given: %+v", s)
	}
}

func TestSettingsErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "REDIS_ADDR"},
		{map[string]string{"REDIS_ADDR": "no-port"}, "REDIS_ADDR"},
		{map[string]string{"REDIS_ADDR": "a:1", "LISTEN_PORT": "70000"}, "LISTEN_PORT"},
		{map[string]string{"REDIS_ADDR": "a:1", "PUBLIC_IP": "::1"}, "PUBLIC_IP"},
		{map[string]string{"REDIS_ADDR": "a:1", "REDIS_TIMEOUT_SECS": "soon"}, "REDIS_TIMEOUT_SECS"},
	} {
		if _, err := settingsFrom(lookup(c.env)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v does not name %s", c.env, err, c.want)
		}
	}
}

func TestRelayLimitsSuitALongLivedSharedRelay(t *testing.T) {
	r := relayResources()
	if r.MaxReservations < 1000 || r.MaxReservationsPerIP < 100 || r.MaxCircuits < 16 {
		t.Fatalf("counts too small for a busy host: %+v", r)
	}
	if r.ReservationTTL != time.Hour {
		t.Fatalf("reservation TTL %s", r.ReservationTTL)
	}
	if r.Limit == nil || r.Limit.Duration < 2*time.Minute || r.Limit.Data < 1<<20 {
		t.Fatalf("circuit limit %+v", r.Limit)
	}
}

func TestAdvertisesExactlyOneTCPAndOneQUICAddress(t *testing.T) {
	listening := []ma.Multiaddr{
		ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip4/172.17.0.2/tcp/4001"),
		ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1"), ma.StringCast("/ip4/172.17.0.2/udp/4001/quic-v1"),
		ma.StringCast("/ip4/172.17.0.2/udp/4001/quic-v1/webtransport"),
	}
	got := advertised(net.IPv4(11, 11, 0, 3))(listening)
	want := []string{"/ip4/11.11.0.3/tcp/4001", "/ip4/11.11.0.3/udp/4001/quic-v1"}
	if len(got) != len(want) || got[0].String() != want[0] || got[1].String() != want[1] {
		t.Fatalf("advertised %v, want %v", got, want)
	}
	if tp, qp := listenPorts(listening[:1]); tp != 4001 || qp != 0 {
		t.Fatalf("ports %d %d", tp, qp)
	}
}

// fakeRedis is a fake Redis on loopback: PING, SET and GET on a map, enough for the relay.
type fakeRedis struct {
	ln   net.Listener
	mu   sync.Mutex
	keys map[string]string
}

func startFakeRedis(t *testing.T) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, keys: map[string]string{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeRedis) serve(conn net.Conn) {
	defer conn.Close()
	rd := bufio.NewReader(conn)
	for {
		cmd, err := readReply(rd) // a command is a RESP array of bulk strings
		if err != nil {
			return
		}
		args, _ := cmd.([]any)
		if len(args) == 0 {
			return
		}
		word := func(i int) string { s, _ := args[i].(string); return s }
		f.mu.Lock()
		switch strings.ToUpper(word(0)) {
		case "PING":
			conn.Write([]byte("+PONG\r\n"))
		case "SET":
			f.keys[word(1)] = word(2)
			conn.Write([]byte("+OK\r\n"))
		case "GET":
			if v, ok := f.keys[word(1)]; ok {
				conn.Write(encodeCommand(v)[4:]) // the bulk string alone
			} else {
				conn.Write([]byte("$-1\r\n"))
			}
		default:
			conn.Write([]byte("-ERR unknown command\r\n"))
		}
		f.mu.Unlock()
	}
}

func TestRedisClientAgainstAFakeServer(t *testing.T) {
	f := startFakeRedis(t)
	c, err := connectRedis(context.Background(), f.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := publish(c, "/ip4/1.2.3.4/tcp/1/p2p/x", "/ip4/1.2.3.4/udp/1/quic-v1/p2p/x"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.Get(keyQUIC); err != nil || !ok || v != "/ip4/1.2.3.4/udp/1/quic-v1/p2p/x" {
		t.Fatalf("GET %s: %q %t %v", keyQUIC, v, ok, err)
	}
	if _, ok, err := c.Get("missing"); err != nil || ok {
		t.Fatalf("GET missing: %t %v", ok, err)
	}
	if _, err := c.do("NOPE"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("error reply: %v", err)
	}
}

func TestRedisDeadline(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	started := time.Now()
	_, err := connectRedis(context.Background(), addr, 600*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not reachable within") {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if waited := time.Since(started); waited < 500*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("gave up after %s", waited)
	}
}

// clientHost is a peer as the test clients are: relay client on, TCP (noise, yamux) and QUIC.
func clientHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(tcp.NewTCPTransport), libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.EnableRelay(), libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// A relay on loopback publishes its two addresses to (fake) Redis; then, over each of them, a
// listener reserves (and learns the address the relay observed it at), a dialer reaches it
// through /p2p-circuit and pings it over the relayed connection.
func TestReserveAndRelayOverTCPAndQUIC(t *testing.T) {
	loopback := net.IPv4(127, 0, 0, 1).To4()
	r, err := start(loopback, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	f := startFakeRedis(t)
	c, err := connectRedis(context.Background(), f.ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := publish(c, r.tcp, r.quic); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, key := range []string{keyTCP, keyQUIC} {
		t.Run(key, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			published := f.keys[key]
			if !strings.HasSuffix(published, "/p2p/"+r.host.ID().String()) ||
				!strings.HasPrefix(published, "/ip4/127.0.0.1/") {
				t.Fatalf("%s = %q", key, published)
			}
			relayInfo, err := peer.AddrInfoFromString(published)
			if err != nil {
				t.Fatal(err)
			}
			listener, dialer := clientHost(t), clientHost(t)
			identified, err := listener.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
			if err != nil {
				t.Fatal(err)
			}
			defer identified.Close()
			if err := listener.Connect(ctx, *relayInfo); err != nil {
				t.Fatal(err)
			}
			rsvp, err := client.Reserve(ctx, listener, *relayInfo)
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, a := range rsvp.Addrs {
				addrs = append(addrs, a.String())
			}
			if len(addrs) != 2 || addrs[0] != r.tcp || addrs[1] != r.quic {
				t.Fatalf("reservation advertises %v, want [%s %s]", addrs, r.tcp, r.quic)
			}
			if rsvp.LimitDuration != 10*time.Minute || rsvp.LimitData != 64<<20 {
				t.Fatalf("circuit limit %s / %d bytes", rsvp.LimitDuration, rsvp.LimitData)
			}
			observed := waitObserved(t, ctx, identified, r.host.ID())
			if !strings.HasPrefix(observed.String(), "/ip4/127.0.0.1/") {
				t.Fatalf("observed address %s", observed)
			}

			circuit := ma.StringCast(published + "/p2p-circuit/p2p/" + listener.ID().String())
			dialer.Peerstore().AddAddr(listener.ID(), circuit, time.Minute)
			if err := dialer.Connect(network.WithAllowLimitedConn(ctx, "test"),
				peer.AddrInfo{ID: listener.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
				t.Fatal(err)
			}
			conns := dialer.Network().ConnsToPeer(listener.ID())
			if len(conns) != 1 || !conns[0].Stat().Limited {
				t.Fatalf("want one limited (relayed) connection, got %v", conns)
			}
			res := <-ping.Ping(network.WithAllowLimitedConn(ctx, "test"), dialer, listener.ID())
			if res.Error != nil {
				t.Fatalf("ping over the circuit: %v", res.Error)
			}
			t.Logf("%s: reserved, observed at %s, ping over the circuit %s", key, observed, res.RTT)
		})
	}
	if r.events.reservations.Load() != 2 || r.events.circuits.Load() != 2 || r.events.denied.Load() != 0 {
		t.Fatalf("relay counted %d reservations, %d circuits, %d denied", r.events.reservations.Load(),
			r.events.circuits.Load(), r.events.denied.Load())
	}
}

// waitObserved is the address `relay` said it observed us at (identify).
func waitObserved(t *testing.T, ctx context.Context, sub event.Subscription, relay peer.ID) ma.Multiaddr {
	t.Helper()
	for {
		select {
		case e := <-sub.Out():
			ev := e.(event.EvtPeerIdentificationCompleted)
			if ev.Peer == relay {
				if ev.ObservedAddr == nil {
					t.Fatal("the relay's identify carried no observed address")
				}
				return ev.ObservedAddr
			}
		case <-ctx.Done():
			t.Fatal("no identify from the relay")
		}
	}
}

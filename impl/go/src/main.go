// hole-punch-client: the go-libp2p side of the holepunch interop test.
//
// The run-time contract is impl/README.md: MODE (dial|listen), TRANSPORT
// (tcp|quic), SECURE_CHANNEL (noise|tls) and MUXER (yamux) for tcp,
// REDIS_ADDR, TEST_KEY. Logs go to stderr; the dialer's last stdout line is
// {"rtt_to_holepunched_peer_millis": N, "time_to_direct_ms": T, "rtt_samples_millis": [...]}
// and both sides print `holepunch-step: NAME` on stderr as they go. One source for every go-libp2p
// version: each version folder links it and pins the modules (go.mod).
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

const defaultTimeout = 90 * time.Second

type config struct {
	mode          string // "dial" or "listen"
	transport     string // "tcp" or "quic"
	secureChannel string // "noise" or "tls": what TCP connections to the peer use
	muxer         string // "yamux"
	redisAddr     string
	testKey       string
	timeout       time.Duration
}

func main() {
	cfg, err := configFromEnv()
	if err != nil {
		fail("bad configuration: %v", err)
	}
	logf("go-libp2p hole-punch client: mode=%s transport=%s secure_channel=%s muxer=%s redis=%s key=%s timeout=%s",
		cfg.mode, cfg.transport, cfg.secureChannel, cfg.muxer, cfg.redisAddr, cfg.testKey, cfg.timeout)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fail("%s failed: %v", cfg.mode, err)
	}
}

func configFromEnv() (config, error) {
	cfg := config{
		mode:          os.Getenv("MODE"),
		transport:     os.Getenv("TRANSPORT"),
		secureChannel: cmp.Or(os.Getenv("SECURE_CHANNEL"), "noise"),
		muxer:         cmp.Or(os.Getenv("MUXER"), "yamux"),
		redisAddr:     os.Getenv("REDIS_ADDR"),
		testKey:       os.Getenv("TEST_KEY"),
		timeout:       defaultTimeout,
	}
	if cfg.mode != "dial" && cfg.mode != "listen" {
		return cfg, fmt.Errorf("MODE=%q, expected dial or listen", cfg.mode)
	}
	if cfg.transport != "tcp" && cfg.transport != "quic" {
		return cfg, fmt.Errorf("TRANSPORT=%q, expected tcp or quic", cfg.transport)
	}
	if cfg.secureChannel != "noise" && cfg.secureChannel != "tls" {
		return cfg, fmt.Errorf("SECURE_CHANNEL=%q is not supported (this client supports noise, tls)", cfg.secureChannel)
	}
	// go-libp2p no longer ships mplex: p2p/muxer has yamux only in v0.48 and v0.51.
	if cfg.muxer != "yamux" {
		return cfg, fmt.Errorf("MUXER=%q is not supported (this client supports yamux)", cfg.muxer)
	}
	if cfg.redisAddr == "" {
		return cfg, errors.New("REDIS_ADDR is empty, expected host:port")
	}
	if cfg.testKey == "" {
		return cfg, errors.New("TEST_KEY is empty, expected the test's Redis namespace")
	}
	if s := os.Getenv("CLIENT_TIMEOUT_SECONDS"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs <= 0 {
			return cfg, fmt.Errorf("CLIENT_TIMEOUT_SECONDS=%q, expected a positive number", s)
		}
		cfg.timeout = time.Duration(secs * float64(time.Second))
	}
	return cfg, nil
}

func run(ctx context.Context, cfg config) error {
	rdb, err := dialRedis(ctx, cfg.redisAddr)
	if err != nil {
		return err
	}
	defer rdb.Close()

	relayKey := cfg.testKey + ":RELAY_TCP_ADDRESS"
	if cfg.transport == "quic" {
		relayKey = cfg.testKey + ":RELAY_QUIC_ADDRESS"
	}
	logf("waiting for the relay address at %s", relayKey)
	relayAddr, err := rdb.BLPop(ctx, relayKey)
	if err != nil {
		return err
	}
	relay, err := peer.AddrInfoFromString(relayAddr)
	if err != nil {
		return fmt.Errorf("relay address %q from %s: %w", relayAddr, relayKey, err)
	}
	logf("relay: %s", relayAddr)

	keyLog := openKeyLog()
	h, err := newHost(cfg.transport, cfg.secureChannel, keyLog)
	if err != nil {
		return fmt.Errorf("create libp2p host: %w", err)
	}
	defer closeHost(h)
	if keyLog != nil && cfg.transport == "quic" {
		logQUICKeys(h, keyLog)
	}
	logf("peer id %s, listening on %v", h.ID(), h.Network().ListenAddresses())

	// Watch before connecting, so the moment DCUtR becomes ready is not missed.
	dcutrReady, err := holePunchReady(h)
	if err != nil {
		return err
	}

	if err := h.Connect(ctx, *relay); err != nil {
		return fmt.Errorf("connect to relay %s: %w", relayAddr, err)
	}
	logf("connected to the relay")

	if cfg.mode == "listen" {
		rsvp, err := client.Reserve(ctx, h, *relay)
		if err != nil {
			return fmt.Errorf("reservation on relay %s: %w", relay.ID, err)
		}
		logf("reservation on the relay until %s", rsvp.Expiration.Format(time.RFC3339))
		step("relay-reserved")
	}

	// DCUtR only answers (and only starts) hole punches once it knows a
	// public address of ours: the one the relay observed through the NAT.
	logf("waiting for DCUtR to learn our public (observed) address")
	select {
	case <-dcutrReady:
		logf("DCUtR ready")
	case <-ctx.Done():
		return fmt.Errorf("DCUtR never became ready: the relay reported no public observed "+
			"address (is the simulated internet in a range go-libp2p treats as public?): %w", ctx.Err())
	}

	if cfg.mode == "listen" {
		return listen(ctx, h, rdb, cfg)
	}
	return dial(ctx, h, rdb, cfg, relayAddr)
}

// newHost builds a host behind a NAT: hole punching and the relay client on,
// reachability forced private, yamux for TCP and relayed connections. The
// secure channel asked for comes first; noise stays as the fallback, since the
// relay speaks noise only (two tls peers still negotiate tls with each other).
func newHost(transport, secureChannel string, keyLog io.Writer) (host.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	var security []libp2p.Option
	if secureChannel == "tls" {
		security = append(security, libp2p.Security(libp2ptls.ID, tlsWithKeyLog(keyLog)))
	}
	security = append(security, libp2p.Security(noise.ID, noise.New))
	opts := append(security,
		libp2p.Identity(key),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.EnableRelay(),
		libp2p.EnableHolePunching(holepunch.WithTracer(stderrTracer{})),
		libp2p.ForceReachabilityPrivate(),
		// Behind the NAT none of our interface addresses is dialable from
		// outside, so advertise none: a LAN subnet that happens to look
		// public would otherwise cost a futile direct dial before the punch.
		// DCUtR still sends the addresses the relay observed (see README).
		libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return nil }),
	)
	switch transport {
	case "tcp":
		opts = append(opts,
			libp2p.Transport(tcp.NewTCPTransport),
			libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/0"))
	case "quic":
		opts = append(opts,
			libp2p.Transport(libp2pquic.NewTransport),
			libp2p.ListenAddrStrings("/ip4/0.0.0.0/udp/0/quic-v1"))
	}
	return libp2p.New(opts...)
}

func closeHost(h host.Host) {
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		logf("host did not close within 2 s; leaving anyway")
	}
}

// holePunchReady returns a channel closed once go-libp2p registered the DCUtR
// stream handler, which it does when identify reported a public observed address.
func holePunchReady(h host.Host) (<-chan struct{}, error) {
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalProtocolsUpdated))
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		// Draining until ready, then closing: an unread subscription blocks the bus.
		defer sub.Close()
		for !slices.Contains(h.Mux().Protocols(), holepunch.Protocol) {
			if _, ok := <-sub.Out(); !ok {
				return
			}
		}
		close(ready)
	}()
	return ready, nil
}

func listen(ctx context.Context, h host.Host, rdb *redisClient, cfg config) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			logf("connection from %s via %s (%s, %s)", c.RemotePeer(), c.RemoteMultiaddr(), c.Stat().Direction, upgrades(c))
		},
	})

	key := cfg.testKey + ":LISTEN_CLIENT_PEER_ID"
	if err := rdb.RPush(ctx, key, h.ID().String()); err != nil {
		return err
	}
	logf("published peer id to %s; staying up until stopped", key)

	sig := <-stop
	logf("stopping on %s", sig)
	return nil
}

func dial(ctx context.Context, h host.Host, rdb *redisClient, cfg config, relayAddr string) error {
	key := cfg.testKey + ":LISTEN_CLIENT_PEER_ID"
	logf("waiting for the listener's peer id at %s", key)
	idStr, err := rdb.BLPop(ctx, key)
	if err != nil {
		return err
	}
	listener, err := peer.Decode(idStr)
	if err != nil {
		return fmt.Errorf("listener peer id %q from %s: %w", idStr, key, err)
	}

	direct := make(chan network.Conn, 4)
	closed := make(chan struct{}, 4)
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			logf("connection to %s via %s (%s, %s)", c.RemotePeer(), c.RemoteMultiaddr(), c.Stat().Direction, upgrades(c))
			if c.RemotePeer() == listener && !isRelayed(c.RemoteMultiaddr()) {
				select {
				case direct <- c:
				default:
				}
			}
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == listener {
				select {
				case closed <- struct{}{}:
				default:
				}
			}
		},
	})

	circuit, err := ma.NewMultiaddr(relayAddr + "/p2p-circuit")
	if err != nil {
		return err
	}
	logf("dialing %s/p2p/%s", circuit, listener)
	dialed := time.Now()
	relayedCtx := network.WithAllowLimitedConn(ctx, "hole-punch dial through the relay")
	if err := h.Connect(relayedCtx, peer.AddrInfo{ID: listener, Addrs: []ma.Multiaddr{circuit}}); err != nil {
		return fmt.Errorf("dial the listener through the relay: %w", err)
	}
	logf("relayed connection up; waiting for the DCUtR upgrade")
	step("relayed-connection")

	conn, err := waitDirect(ctx, h, listener, direct, closed)
	if err != nil {
		return err
	}
	toDirect := time.Since(dialed)
	logf("direct connection: %s -> %s (%s)", conn.LocalMultiaddr(), conn.RemoteMultiaddr(), upgrades(conn))
	step("direct-connection")

	rtts, err := pingDirect(ctx, h, listener)
	if err != nil {
		return err
	}
	step("ping")
	line, err := resultLine(rtts, toDirect)
	if err != nil {
		return err
	}
	fmt.Println(line)
	return nil
}

// resultLine is the dialer's last stdout line: the median RTT in whole milliseconds (the
// contract's field), every sample and the time from the relayed dial to the direct connection.
func resultLine(rtts []time.Duration, toDirect time.Duration) (string, error) {
	samples := make([]float64, len(rtts))
	for i, rtt := range rtts {
		samples[i] = millis(rtt)
	}
	b, err := json.Marshal(struct {
		RTT      int64     `json:"rtt_to_holepunched_peer_millis"`
		ToDirect float64   `json:"time_to_direct_ms"`
		Samples  []float64 `json:"rtt_samples_millis"`
	}{int64(math.Round(median(samples))), millis(toDirect), samples})
	return string(b), err
}

// millis is a duration in milliseconds to a tenth.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*10) / 10
}

func median(samples []float64) float64 {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// punchRetryGrace is how long, after a failed DCUtR attempt, the listener (which drives the
// retries) has to start another before the punch has failed. After our side of an attempt
// fails, the listener's side of it may still be dialing (seen behind a symmetric NAT: its
// attempt outlived ours by more than 3 s, and its next one punched), so the grace is longer
// until the listener's last attempt (go-libp2p and js-libp2p make punchAttempts) has failed.
const (
	punchAttempts         = 3
	punchRetryGrace       = 10 * time.Second
	punchLastAttemptGrace = 3 * time.Second
)

// waitDirect waits for a direct connection to the listener, and gives up as soon as the punch
// has definitively failed: the relayed connection closed with no direct one, or a DCUtR attempt
// failed and no other began within punchRetryGrace.
func waitDirect(ctx context.Context, h host.Host, listener peer.ID, direct <-chan network.Conn, closed <-chan struct{}) (network.Conn, error) {
	if c := directConnTo(h, listener); c != nil {
		return c, nil
	}
	running, failures, lastFailure := 0, 0, ""
	var grace <-chan time.Time
	var graceFor time.Duration
	failed := func(reason string) {
		lastFailure, failures = reason, failures+1
		if running == 0 {
			graceFor = punchRetryGrace
			if failures >= punchAttempts {
				graceFor = punchLastAttemptGrace
			}
			grace = time.After(graceFor)
		}
	}
	for {
		select {
		case c := <-direct:
			return c, nil
		case <-closed:
			if c := directConnTo(h, listener); c != nil {
				return c, nil
			}
			if len(h.Network().ConnsToPeer(listener)) == 0 {
				return nil, fmt.Errorf("the relayed connection to %s closed with no direct one: the hole punch failed (last DCUtR error: %s)",
					listener, cmp.Or(lastFailure, "none"))
			}
		case evt := <-punchEvents:
			if evt.Remote != listener {
				continue
			}
			switch e := evt.Evt.(type) {
			case *holepunch.StartHolePunchEvt:
				running++
				grace = nil
			case *holepunch.EndHolePunchEvt:
				running = max(running-1, 0)
				if !e.Success {
					failed(e.Error)
				}
			case *holepunch.ProtocolErrorEvt:
				failed(e.Error)
			}
		case <-grace:
			if c := directConnTo(h, listener); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("DCUtR failed (%s) and %s started no new attempt within %s: the hole punch failed",
				lastFailure, listener, graceFor)
		case <-ctx.Done():
			return nil, fmt.Errorf("no direct connection to %s (hole punch did not succeed): %w", listener, ctx.Err())
		}
	}
}

func directConnTo(h host.Host, p peer.ID) network.Conn {
	for _, c := range h.Network().ConnsToPeer(p) {
		if !isRelayed(c.RemoteMultiaddr()) {
			return c
		}
	}
	return nil
}

// pingRounds is how many round trips the dialer measures: the result is their median.
const pingRounds = 5

// pingDirect runs the ping protocol on a stream that the swarm may only put
// on a non-limited (hence non-relayed) connection, checks that it did, and
// returns every round trip.
func pingDirect(ctx context.Context, h host.Host, p peer.ID) ([]time.Duration, error) {
	s, err := h.NewStream(network.WithNoDial(ctx, "ping the hole-punched connection"), p, ping.ID)
	if err != nil {
		return nil, fmt.Errorf("open ping stream on the direct connection: %w", err)
	}
	defer s.Close()
	if addr := s.Conn().RemoteMultiaddr(); isRelayed(addr) || s.Conn().Stat().Limited {
		s.Reset()
		return nil, fmt.Errorf("ping stream landed on a relayed connection %s", addr)
	}
	if deadline, ok := ctx.Deadline(); ok {
		s.SetDeadline(deadline)
	}

	rtts := make([]time.Duration, 0, pingRounds)
	out, in := make([]byte, ping.PingSize), make([]byte, ping.PingSize)
	for i := range pingRounds {
		if _, err := rand.Read(out); err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := s.Write(out); err != nil {
			return nil, fmt.Errorf("ping %d over %s: write: %w", i+1, s.Conn().RemoteMultiaddr(), err)
		}
		if _, err := io.ReadFull(s, in); err != nil {
			return nil, fmt.Errorf("ping %d over %s: read: %w", i+1, s.Conn().RemoteMultiaddr(), err)
		}
		rtt := time.Since(start)
		if !bytes.Equal(in, out) {
			return nil, fmt.Errorf("ping %d over %s: echo does not match", i+1, s.Conn().RemoteMultiaddr())
		}
		logf("ping %d over %s: %s", i+1, s.Conn().RemoteMultiaddr(), rtt)
		rtts = append(rtts, rtt)
	}
	return rtts, nil
}

// upgrades names what a connection negotiated, e.g. "security /tls/1.0.0,
// muxer /yamux/1.0.0" (the e2e tests read it); QUIC names neither.
func upgrades(c network.Conn) string {
	state := c.ConnState()
	return fmt.Sprintf("security %s, muxer %s", cmp.Or(string(state.Security), "-"),
		cmp.Or(string(state.StreamMultiplexer), "-"))
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// stderrTracer logs DCUtR's events, which tell why a punch failed, and hands them to the
// dialer's waitDirect (punchEvents; dropped when nobody reads, as in a listener).
type stderrTracer struct{}

var punchEvents = make(chan *holepunch.Event, 64)

func (stderrTracer) Trace(evt *holepunch.Event) {
	b, err := json.Marshal(evt.Evt)
	if err != nil {
		b = []byte(err.Error())
	}
	logf("dcutr %s with %s: %s", evt.Type, evt.Remote, b)
	if evt.Type == holepunch.StartHolePunchEvtT || evt.Type == holepunch.HolePunchAttemptEvtT {
		dcutrStarted.Do(func() { step("dcutr-started") })
	}
	select {
	case punchEvents <- evt:
	default:
	}
}

var dcutrStarted sync.Once

// step tells the harness how far the test got: `holepunch-step: NAME` on stderr
// (impl/README.md); it reads the step a failed test stopped at from these lines.
func step(name string) {
	fmt.Fprintf(os.Stderr, "holepunch-step: %s\n", name)
}

// openKeyLog opens SSLKEYLOGFILE for appending when it is set, so captures of
// TLS and QUIC connections can be decrypted; nil when unset or not writable.
func openKeyLog() io.Writer {
	path := os.Getenv("SSLKEYLOGFILE")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		logf("SSLKEYLOGFILE=%s: %v; no key log", path, err)
		return nil
	}
	return f
}

// tlsWithKeyLog is libp2ptls.New with the identity's tls.Config writing its
// keys to w. go-libp2p has no option for it, so the unexported config is set
// through reflection; a version whose layout differs only loses the key log.
func tlsWithKeyLog(w io.Writer) func(protocol.ID, crypto.PrivKey, []tptu.StreamMuxer) (*libp2ptls.Transport, error) {
	return func(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*libp2ptls.Transport, error) {
		t, err := libp2ptls.New(id, key, muxers)
		if err == nil && w != nil && !setKeyLog(t, w) {
			logf("tls: cannot set a key log on this go-libp2p version")
		}
		return t, err
	}
}

// logQUICKeys sets the key log on the QUIC transport's TLS identity (its
// configs are cloned per connection, so connections made from now on log).
func logQUICKeys(h host.Host, w io.Writer) {
	sw, ok := h.Network().(*swarm.Swarm)
	addr := ma.StringCast("/ip4/0.0.0.0/udp/0/quic-v1")
	if !ok || !setKeyLog(sw.TransportForListening(addr), w) {
		logf("quic: cannot set a key log on this go-libp2p version")
	}
}

// setKeyLog sets KeyLogWriter on target.identity.config (a *libp2ptls.Identity
// holding a tls.Config), the shape both the tls and the quic transport have.
func setKeyLog(target any, w io.Writer) bool {
	v := reflect.ValueOf(target)
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && !v.IsNil() {
		v = v.Elem()
	}
	if !v.IsValid() || v.Kind() != reflect.Struct || !v.CanAddr() {
		return false
	}
	identity := v.FieldByName("identity")
	if !identity.IsValid() || identity.Kind() != reflect.Pointer || identity.IsNil() {
		return false
	}
	config := identity.Elem().FieldByName("config")
	if !config.IsValid() || config.Type() != reflect.TypeOf(tls.Config{}) || !config.CanAddr() {
		return false
	}
	(*tls.Config)(unsafe.Pointer(config.UnsafeAddr())).KeyLogWriter = w
	return true
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000")+" "+format+"\n", args...)
}

func fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	logf("error: %s", strings.TrimSpace(msg))
	os.Exit(1)
}

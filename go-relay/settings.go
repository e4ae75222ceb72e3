package main

// The relay's settings, read from the environment (the same variables as rust-relay's), and the
// address it advertises.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	// Redis keys the relay publishes its multiaddrs (with /p2p/<peer id>) under, as rust-relay does:
	// worker/services.py reads RELAY_<TRANSPORT>_ADDRESS for each transport.
	keyTCP  = "RELAY_TCP_ADDRESS"
	keyQUIC = "RELAY_QUIC_ADDRESS"
)

type settings struct {
	redisAddr    string        // REDIS_ADDR: host:port of the Redis to publish to (required)
	listenPort   int           // LISTEN_PORT (default 4001): the TCP port and the UDP (QUIC) port
	publicIP     net.IP        // PUBLIC_IP: the address to advertise; nil: the first interface's
	redisTimeout time.Duration // REDIS_TIMEOUT_SECS (default 60): keep retrying Redis this long
}

// settingsFrom reads the settings through get (os.Getenv in main), so tests need no environment.
func settingsFrom(get func(string) string) (settings, error) {
	value := func(key string) string { return strings.TrimSpace(get(key)) }
	s := settings{listenPort: 4001, redisTimeout: 60 * time.Second}
	s.redisAddr = value("REDIS_ADDR")
	if s.redisAddr == "" {
		return s, errors.New("REDIS_ADDR (host:port) is not set")
	}
	if _, _, err := net.SplitHostPort(s.redisAddr); err != nil {
		return s, fmt.Errorf("REDIS_ADDR must be host:port, got %q", s.redisAddr)
	}
	if v := value("LISTEN_PORT"); v != "" {
		port, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return s, fmt.Errorf("LISTEN_PORT %q is not a port", v)
		}
		s.listenPort = int(port)
	}
	if v := value("PUBLIC_IP"); v != "" {
		ip := net.ParseIP(v)
		if ip == nil || ip.To4() == nil {
			return s, fmt.Errorf("PUBLIC_IP %q is not an IPv4 address", v)
		}
		s.publicIP = ip.To4()
	}
	if v := value("REDIS_TIMEOUT_SECS"); v != "" {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return s, fmt.Errorf("REDIS_TIMEOUT_SECS %q is not a whole number of seconds", v)
		}
		s.redisTimeout = time.Duration(secs) * time.Second
	}
	return s, nil
}

func settingsFromEnv() (settings, error) { return settingsFrom(os.Getenv) }

// firstInterfaceIPv4 is the first non-loopback, non-link-local IPv4 address of an interface that
// is up: the relay's address on the simulated internet (its only interface there).
func firstInterfaceIPv4() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, addr := range addrs {
			ipnet, ok := addr.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipnet.IP.To4()
			if ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
				return ip, nil
			}
		}
	}
	return nil, errors.New("no non-loopback IPv4 address on any interface (set PUBLIC_IP)")
}

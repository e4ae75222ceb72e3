package main

// A minimal Redis (RESP2) client: the relay only PINGs, SETs its two addresses and (in tests)
// GETs them back, so no Redis library is vendored.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

const redisRetryEvery = 250 * time.Millisecond

type redisConn struct {
	conn net.Conn
	rd   *bufio.Reader
}

// connectRedis connects to addr and PINGs it, retrying every 250 ms until `within` has passed:
// the host's Redis may still be starting when the relay starts.
func connectRedis(ctx context.Context, addr string, within time.Duration) (*redisConn, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		c, err := dialRedisOnce(ctx, addr)
		if err == nil {
			if _, err = c.do("PING"); err == nil {
				return c, nil
			}
			c.Close()
		}
		last = err
		if attempt%20 == 0 { // every 5 s
			logf("redis %s not reachable yet: %v", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis %s not reachable within %s: %w", addr, within, last)
		case <-time.After(redisRetryEvery):
		}
	}
}

func dialRedisOnce(ctx context.Context, addr string) (*redisConn, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &redisConn{conn: conn, rd: bufio.NewReader(conn)}, nil
}

func (c *redisConn) Close() error { return c.conn.Close() }

// Set stores value at key.
func (c *redisConn) Set(key, value string) error {
	reply, err := c.do("SET", key, value)
	if err != nil {
		return fmt.Errorf("SET %s: %w", key, err)
	}
	if reply != "OK" {
		return fmt.Errorf("SET %s: unexpected reply %#v", key, reply)
	}
	return nil
}

// Get returns the value at key, and whether there was one.
func (c *redisConn) Get(key string) (string, bool, error) {
	reply, err := c.do("GET", key)
	if err != nil {
		return "", false, fmt.Errorf("GET %s: %w", key, err)
	}
	switch v := reply.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	}
	return "", false, fmt.Errorf("GET %s: unexpected reply %#v", key, reply)
}

// do sends one command and reads its reply, within 5 s.
func (c *redisConn) do(args ...string) (any, error) {
	if err := c.conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(encodeCommand(args...)); err != nil {
		return nil, err
	}
	return readReply(c.rd)
}

// encodeCommand is a RESP2 array of bulk strings.
func encodeCommand(args ...string) []byte {
	buf := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, a...)
		buf = append(buf, "\r\n"...)
	}
	return buf
}

// readReply parses one RESP2 reply: a string (simple or bulk), an int64, nil (a nil bulk or
// array), []any, or an error for a Redis error reply.
func readReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New("redis error: " + body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("malformed bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(rd, data); err != nil {
			return nil, err
		}
		return string(data[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("malformed array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		items := make([]any, n)
		for i := range items {
			if items[i], err = readReply(rd); err != nil {
				return nil, err
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", kind)
}

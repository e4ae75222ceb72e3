package main

// A minimal Redis (RESP2) client: the test needs only BLPOP and RPUSH, and a
// dependency-free client keeps the vendored tree and the image small.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"time"
)

type redisClient struct {
	conn net.Conn
	rd   *bufio.Reader
}

// dialRedis connects to addr, retrying until ctx ends: Redis may still be
// starting when the client starts.
func dialRedis(ctx context.Context, addr string) (*redisClient, error) {
	var d net.Dialer
	for attempt := 0; ; attempt++ {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return &redisClient{conn: conn, rd: bufio.NewReader(conn)}, nil
		}
		if attempt%20 == 0 { // every 5 s
			logf("redis %s not reachable yet: %v", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to redis %s: %w", addr, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *redisClient) Close() error { return c.conn.Close() }

// BLPop pops the first value of key, waiting until ctx ends.
func (c *redisClient) BLPop(ctx context.Context, key string) (string, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return "", errors.New("BLPOP needs a context with a deadline")
	}
	// Redis takes whole seconds; round up, and never 0 (which blocks forever).
	wait := int(math.Ceil(time.Until(deadline).Seconds()))
	if wait < 1 {
		return "", fmt.Errorf("BLPOP %s: %w", key, context.DeadlineExceeded)
	}
	reply, err := c.do(deadline.Add(2*time.Second), "BLPOP", key, strconv.Itoa(wait))
	if err != nil {
		return "", fmt.Errorf("BLPOP %s: %w", key, err)
	}
	switch r := reply.(type) {
	case nil:
		return "", fmt.Errorf("BLPOP %s: timed out after %d s", key, wait)
	case []any:
		if len(r) == 2 {
			if v, ok := r[1].(string); ok {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("BLPOP %s: unexpected reply %#v", key, reply)
}

// RPush appends value to the list at key.
func (c *redisClient) RPush(ctx context.Context, key, value string) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	reply, err := c.do(deadline, "RPUSH", key, value)
	if err != nil {
		return fmt.Errorf("RPUSH %s: %w", key, err)
	}
	if _, ok := reply.(int64); !ok {
		return fmt.Errorf("RPUSH %s: unexpected reply %#v", key, reply)
	}
	return nil
}

func (c *redisClient) do(deadline time.Time, args ...string) (any, error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	buf := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, a...)
		buf = append(buf, "\r\n"...)
	}
	if _, err := c.conn.Write(buf); err != nil {
		return nil, err
	}
	return c.readReply()
}

// readReply parses one RESP2 reply: string, int64, nil, []any, or an error
// for a Redis error reply.
func (c *redisClient) readReply() (any, error) {
	line, err := c.rd.ReadString('\n')
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
		return nil, fmt.Errorf("redis error: %s", body)
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
		if _, err := io.ReadFull(c.rd, data); err != nil {
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
			if items[i], err = c.readReply(); err != nil {
				return nil, err
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", kind)
}

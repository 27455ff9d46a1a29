package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The load generator speaks just enough HTTP/1.1 to send one fixed keep-alive
// request and read its response, on raw sockets: Go's net/http client, and
// even net.Conn with its netpoller round trip, cost about as much CPU per
// request as the server, and a generator that saturates before the server
// does measures itself. The saturation loop works like wrk: one thread, one
// epoll set, every connection non-blocking.
var request = []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: uranus-bench\r\n\r\n")

// conn is one keep-alive connection with at most one request in flight.
type conn struct {
	fd  int
	buf []byte // response bytes read but not yet consumed
}

// dial connects to addr ("127.0.0.1:port"), blocking or not.
func dial(addr string, nonblock bool) (*conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("load generator: %q is not an IPv4 address and port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// As Go's net package does: a request goes out in one segment at once.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := retryEINTR(func() error {
		return unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	if nonblock {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return &conn{fd: fd, buf: make([]byte, 0, 4096)}, nil
}

func (c *conn) close() { unix.Close(c.fd) }

// retryEINTR repeats a system call the Go runtime's signals interrupted.
func retryEINTR(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// send writes the request; it fits any socket buffer in one write.
func (c *conn) send() error {
	for off := 0; off < len(request); {
		n, err := unix.Write(c.fd, request[off:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sending the request: %w", err)
		}
		off += n
	}
	return nil
}

// fill reads what the socket has; on a non-blocking socket with nothing to
// read it returns EAGAIN.
func (c *conn) fill() error {
	if len(c.buf) == cap(c.buf) {
		return errors.New("response larger than 4 KiB")
	}
	for {
		n, err := unix.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("the server closed the connection")
		}
		c.buf = c.buf[:len(c.buf)+n]
		return nil
	}
}

// take consumes one whole response from the buffer, if there is one.
func (c *conn) take() (bool, error) {
	end := bytes.Index(c.buf, []byte("\r\n\r\n"))
	if end < 0 {
		return false, nil
	}
	head := c.buf[:end]
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return false, fmt.Errorf("unexpected response %q", line)
	}
	length := -1
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return false, fmt.Errorf("bad Content-Length %q", v)
			}
			length = n
		}
	}
	if length < 0 {
		return false, errors.New("response without Content-Length")
	}
	total := end + 4 + length
	if len(c.buf) < total {
		return false, nil
	}
	c.buf = c.buf[:copy(c.buf, c.buf[total:])]
	return true, nil
}

// roundTrip sends the request and waits for the whole response (blocking
// socket).
func (c *conn) roundTrip() error {
	if err := c.send(); err != nil {
		return err
	}
	for {
		if ok, err := c.take(); ok || err != nil {
			return err
		}
		if err := c.fill(); err != nil {
			return fmt.Errorf("reading the response: %w", err)
		}
	}
}

// saturate runs conns closed loops (send, wait for the response, send again)
// for d and returns how many requests completed and how long it took.
func saturate(addr string, conns int, d time.Duration) (int, time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(ep)
	byFD := map[int32]*conn{}
	for i := 0; i < conns; i++ {
		c, err := dial(addr, true)
		if err != nil {
			return 0, 0, err
		}
		defer c.close()
		byFD[int32(c.fd)] = c
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.fd)}); err != nil {
			return 0, 0, err
		}
	}
	start := time.Now()
	end := start.Add(d)
	inFlight := 0
	for _, c := range byFD {
		if err := c.send(); err != nil {
			return 0, 0, err
		}
		inFlight++
	}
	done := 0
	sending := true
	events := make([]unix.EpollEvent, conns)
	for inFlight > 0 {
		n, err := unix.EpollWait(ep, events, 100)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, time.Since(start), err
		}
		if now := time.Now(); sending && !now.Before(end) {
			sending = false
		} else if !sending && now.Sub(end) > 10*time.Second {
			return done, time.Since(start), fmt.Errorf("%d responses still outstanding 10s after the end", inFlight)
		}
		for _, ev := range events[:n] {
			c := byFD[ev.Fd]
			if err := c.fill(); err != nil {
				if errors.Is(err, unix.EAGAIN) {
					continue
				}
				return done, time.Since(start), fmt.Errorf("reading a response: %w", err)
			}
			ok, err := c.take()
			if err != nil {
				return done, time.Since(start), err
			}
			if !ok {
				continue
			}
			done++
			inFlight--
			if sending {
				if err := c.send(); err != nil {
					return done, time.Since(start), err
				}
				inFlight++
			}
		}
	}
	return done, time.Since(start), nil
}

// paced sends requests on one connection at rate per second for d and
// returns the latency of each, after a short warm-up it also sends (and
// counts in sent). A request that comes back late delays the next one
// instead of piling up: this measures what one request costs at a load
// the server handles easily, not queueing.
func paced(addr string, rate int, d time.Duration) (lat []time.Duration, sent int, err error) {
	// A blocking read on a thread of its own: no scheduler between the
	// response's arrival and the clock reading.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := dial(addr, false)
	if err != nil {
		return nil, 0, err
	}
	defer c.close()
	interval := time.Second / time.Duration(rate)
	warm := rate / 10
	lat = make([]time.Duration, 0, int(d/interval)+1)
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if next.After(end) {
			break
		}
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		t0 := time.Now()
		if err := c.roundTrip(); err != nil {
			return lat, sent, err
		}
		took := time.Since(t0)
		sent++
		if i >= warm {
			lat = append(lat, took)
		}
	}
	return lat, sent, nil
}

// percentile returns the p-th percentile (0–100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func latencySummary(lat []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(lat)
	slices.Sort(s)
	return percentile(s, 50), percentile(s, 99)
}

package gotls_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
)

// peer is a TLS server in the test process that the app dials: it records
// the plaintext it receives and sends, byte for byte.
type peer struct {
	ln   net.Listener
	mu   sync.Mutex
	recv [][]byte // per connection, in accept order
	sent [][]byte
}

// reply is what the peer answers an HTTP request with.
const reply = "HTTP/1.1 200 OK\r\nContent-Length: 27\r\nConnection: close\r\n\r\nSECRET-REPLY-fedcba98765432"

func startPeer(t *testing.T, p *pki) *peer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.serverCert}})
	if err != nil {
		t.Fatal(err)
	}
	pr := &peer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go pr.serve(c)
		}
	}()
	return pr
}

// serve handles one connection: an HTTP request (answered with reply), or
// lines until EOF (answered with how many).
func (p *peer) serve(c net.Conn) {
	defer c.Close()
	var got bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &got))
	first, err := br.ReadString('\n')
	var out string
	if strings.HasPrefix(first, "POST ") {
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if line == "\r\n" {
				break
			}
		}
		if _, err := io.ReadFull(br, make([]byte, n)); err != nil {
			return
		}
		out = reply
	} else {
		lines := 0
		for err == nil {
			lines++
			_, err = br.ReadString('\n')
		}
		out = fmt.Sprintf("%d lines\n", lines)
	}
	io.WriteString(c, out)
	p.mu.Lock()
	p.recv = append(p.recv, got.Bytes())
	p.sent = append(p.sent, []byte(out))
	p.mu.Unlock()
}

func (p *peer) last() (recv, sent []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.recv) == 0 {
		return nil, nil
	}
	return p.recv[len(p.recv)-1], p.sent[len(p.sent)-1]
}

// tapEvent is one tls.read or tls.write event of a span.
type tapEvent struct {
	write     bool
	conn      string
	n         int
	plaintext []byte
	has       bool
	at        time.Time
	totals    [2]int64 // the connection's bytes read and written so far
}

func tapEvents(s tracetest.SpanStub) []tapEvent {
	var out []tapEvent
	for _, ev := range s.Events {
		if ev.Name != "tls.read" && ev.Name != "tls.write" {
			continue
		}
		e := tapEvent{write: ev.Name == "tls.write", at: ev.Time}
		for _, kv := range ev.Attributes {
			switch kv.Key {
			case gotls.ConnKey:
				e.conn = kv.Value.AsString()
			case gotls.BytesKey:
				e.n = int(kv.Value.AsInt64())
			case gotls.ConnReadKey:
				e.totals[0] = kv.Value.AsInt64()
			case gotls.ConnWrittenKey:
				e.totals[1] = kv.Value.AsInt64()
			case gotls.PlaintextKey:
				e.plaintext, e.has = []byte(kv.Value.AsString()), true
			case gotls.Plaintext64Key:
				e.plaintext, _ = base64.StdEncoding.DecodeString(kv.Value.AsString())
				e.has = true
			}
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// checkStream checks that calls (in order) cover stream from its start: each
// call's length follows on from the last, and its captured bytes are the
// first min(n, length) bytes of its part of stream.
func checkStream(t *testing.T, what string, calls []tapEvent, stream []byte, n int, whole bool) {
	t.Helper()
	off := 0
	for i, c := range calls {
		if off+c.n > len(stream) {
			t.Errorf("%s: call %d of %d bytes runs past the %d bytes of the stream", what, i, c.n, len(stream))
			return
		}
		want := stream[off : off+min(n, c.n)]
		if n > 0 && !bytes.Equal(c.plaintext, want) {
			t.Errorf("%s: call %d captured %q, want %q", what, i, c.plaintext, want)
		}
		if n == 0 && c.has {
			t.Errorf("%s: call %d captured %q with capture off", what, i, c.plaintext)
		}
		off += c.n
	}
	if whole && off != len(stream) {
		t.Errorf("%s: calls cover %d of the %d bytes", what, off, len(stream))
	}
}

func spanByPath(spans tracetest.SpanStubs, path string) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if attr(s, "url.path") == path {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

const captureN = 64

// TestTap: with capture on, the first bytes of each Read and Write inside
// a request are events of its span, equal byte for byte to what the other
// end sent and received; calls outside spans reach a raw-record reader
// (tls-dump) only; empty, failed and after-Close calls record nothing; a
// Write that morestack restarts is recorded once. With capture off no
// plaintext leaves the kernel side, and byte counts remain.
func TestTap(t *testing.T) {
	e2e.RequireBPF(t)
	for _, capture := range []int{captureN, 0} {
		t.Run(fmt.Sprintf("capture=%d", capture), func(t *testing.T) {
			for _, v := range tlsVersions() {
				t.Run(v, func(t *testing.T) {
					t.Parallel()
					tapVersion(t, v, capture)
				})
			}
		})
	}
}

func tapVersion(t *testing.T, v string, capture int) {
	a := startApp(t, v)
	pr := startPeer(t, a.pki)
	list := []*instrumentors.Instrumentor{httpserver.Instrumentor, gotls.Instrumentor, gotls.TapWith(uint32(capture), capture > 0)}
	s := attachTo(t, a.Cmd.Process.Pid, list, true)

	// The test's client: its handshake, then keep-alive requests, to count
	// what the tap costs per request.
	a.get(t, "/state")
	s.waitSpans("first request", func(sp tracetest.SpanStubs) bool { return len(sp) >= 2 })
	before := s.target.Counters()
	const m = 20
	for i := 0; i < m; i++ {
		a.get(t, "/state")
	}
	s.waitSpans("keep-alive requests", func(sp tracetest.SpanStubs) bool { return len(sp) >= 2+m })
	after := s.target.Counters()
	tapHits := hits(after[gotls.Tap.ID]) - hits(before[gotls.Tap.ID])
	srvHits := hits(after[httpserver.Instrumentor.ID]) - hits(before[httpserver.Instrumentor.ID])
	t.Logf("Go %s, capture %d: %d keep-alive HTTPS requests: %d http-server hits, %d tls-tap hits (%.1f per request)",
		v, capture, m, srvHits, tapHits, float64(tapHits)/m)
	// Per request: the connection's Read of the request (entry, RET), the
	// 1-byte Read net/http's background goroutine makes while the handler
	// runs (entry, and its RET when the request ends and aborts it), and
	// the response's Write. The server's entry may fire once more when the
	// connection's goroutine grows its stack there (morestack restarts the
	// function: two entry hits, one call; seen in CI under load).
	if srvHits < 2*m || srvHits > 2*m+1 || tapHits < 5*m-1 || tapHits > 5*m+1 {
		t.Errorf("%d requests: %d http-server and %d tap hits, want %d and 5 per request", m, srvHits, tapHits, 2*m)
	}

	// The app as a TLS client from inside its handler.
	body := "SECRET-BODY-" + strings.Repeat("0123456789", 10)
	resp, _ := a.get(t, "/raw?addr="+pr.ln.Addr().String()+"&sni=uranus.test&body="+url.QueryEscape(body))
	if !strings.HasPrefix(resp, reply) {
		t.Fatalf("/raw: %q", resp)
	}
	spans := s.waitSpans("/raw", func(sp tracetest.SpanStubs) bool { _, ok := spanByPath(sp, "/raw"); return ok })
	rawSpan, _ := spanByPath(spans, "/raw")
	recv, sent := pr.last()
	var writes, reads []tapEvent
	for _, e := range tapEvents(rawSpan) {
		if e.write {
			writes = append(writes, e)
		} else {
			reads = append(reads, e)
		}
	}
	if len(writes) != 2 || len(reads) == 0 {
		t.Fatalf("/raw span has %d write and %d read events, want 2 and at least 1: %+v", len(writes), len(reads), tapEvents(rawSpan))
	}
	checkStream(t, "/raw writes", writes, recv, capture, true)
	checkStream(t, "/raw reads", reads, sent, capture, true)
	if w, r := writes[len(writes)-1].totals, reads[len(reads)-1].totals; w[1] != int64(len(recv)) || r[0] != int64(len(sent)) {
		t.Errorf("connection totals: %d written after the last write, %d read after the last read; the peer got %d and sent %d", w[1], r[0], len(recv), len(sent))
	}
	if capture > 0 && !strings.HasPrefix(string(writes[0].plaintext), "POST /ingest HTTP/1.1\r\n") {
		t.Errorf("first write %q does not start with the request line", writes[0].plaintext)
	}
	var hs tracetest.SpanStub
	for _, sp := range spans {
		if sp.Name == "TLS client handshake" {
			hs = sp
		}
	}
	if hs.Parent.SpanID() != rawSpan.SpanContext.SpanID() {
		t.Errorf("the handshake tls.Dial made in the handler is not the handler span's child")
	}
	if attr(hs, gotls.ConnKey) != writes[0].conn {
		t.Errorf("handshake names connection %s, tap events %s", attr(hs, gotls.ConnKey), writes[0].conn)
	}

	// A raw client sending Expect: 100-continue, so that the app reads the
	// body and writes its reply inside the handler.
	echoBody := "SECRET-ECHO-" + strings.Repeat("abcdefghij", 9)
	head := "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + strconv.Itoa(len(echoBody)) + "\r\nExpect: 100-continue\r\n\r\n"
	got := rawExchange(t, a, head, echoBody)
	spans = s.waitSpans("/echo", func(sp tracetest.SpanStubs) bool { _, ok := spanByPath(sp, "/echo"); return ok })
	echoSpan, _ := spanByPath(spans, "/echo")
	writes, reads = nil, nil
	for _, e := range tapEvents(echoSpan) {
		if e.write {
			writes = append(writes, e)
		} else {
			reads = append(reads, e)
		}
	}
	if len(reads) != 1 || len(writes) < 2 {
		t.Fatalf("/echo span has %d read and %d write events, want 1 and 2 or more", len(reads), len(writes))
	}
	checkStream(t, "/echo body read", reads, []byte(echoBody), capture, true)
	checkStream(t, "/echo writes", writes, got, capture, false)
	if capture > 0 && string(writes[0].plaintext) != "HTTP/1.1 100 Continue\r\n\r\n" {
		t.Errorf("first write of /echo: %q", writes[0].plaintext)
	}

	// Morestack: every line written once.
	const lines = 300
	resp, _ = a.get(t, "/writes?addr="+pr.ln.Addr().String()+"&sni=uranus.test&n="+strconv.Itoa(lines))
	if resp != fmt.Sprintf("%d lines", lines+1) && resp != fmt.Sprintf("%d lines", lines) {
		t.Errorf("/writes: %q", resp)
	}
	s.waitSpans("/writes", func(sp tracetest.SpanStubs) bool { _, ok := spanByPath(sp, "/writes"); return ok })
	time.Sleep(200 * time.Millisecond) // the raw records were in the ring before the span

	c := s.target.Counters()[gotls.Tap.ID]
	t.Logf("Go %s: tap counters %+v", v, c)
	if c.Extra[3] == 0 {
		t.Errorf("the Write after Close was not counted")
	}
	if c.Extra[1] < 3 { // the empty Write and Read, EOF, the Read after Close
		t.Errorf("%d Reads and Writes without data counted, want at least 3", c.Extra[1])
	}
	if c.RingbufFull != 0 || c.ReadError != 0 || c.InflightFull != 0 {
		t.Errorf("tap counters show losses: %+v", c)
	}
	if st := s.att.Stats(); st.BadRecords != 0 {
		t.Errorf("%d bad records: %s", st.BadRecords, st.LastBad)
	}

	// What a raw-record reader (tls-dump) saw.
	s.mu.Lock()
	records := append([]tapRecord(nil), s.taps...)
	s.mu.Unlock()
	var lineWrites, echoHeadReads int
	var echoConn uint64
	for _, r := range records {
		if r.inst != gotls.Tap.ID {
			continue
		}
		call, err := gotls.DecodeTap(r.record)
		if err != nil {
			t.Fatal(err)
		}
		if capture == 0 && (len(call.Data) > 0 || bytes.Contains(r.record, []byte("SECRET"))) {
			t.Errorf("capture off, yet a record holds plaintext: %q", call.Data)
		}
		if bytes.HasPrefix(call.Data, []byte("line ")) && call.Write {
			lineWrites++
		}
		if !call.Write && string(call.Data) == head[:min(capture, len(head))] && capture > 0 {
			echoHeadReads++
			echoConn = call.Conn
		}
		if bytes.Contains(call.Data, []byte("AFTER-CLOSE")) {
			t.Errorf("a Write to a closed connection was recorded")
		}
	}
	if capture > 0 {
		if lineWrites != lines {
			t.Errorf("the tap recorded %d of the %d line writes (counter of restarts skipped: %d)", lineWrites, lines, c.Extra[2])
		}
		if c.Extra[2] == 0 {
			t.Errorf("no Write restarted after morestack: the sweep of stack depths in /writes no longer provokes it")
		}
		if echoHeadReads != 1 {
			t.Errorf("the /echo request head (read before the span began) reached the raw reader %d times, want once", echoHeadReads)
		} else if gotls.ConnID(echoConn) != writes[0].conn {
			t.Errorf("the head was read on %s, the span's events are on %s", gotls.ConnID(echoConn), writes[0].conn)
		}
	}
	t.Logf("Go %s: %d Write entries were morestack restarts, skipped", v, c.Extra[2])

	// Nothing the peers exchanged appears in what is exported with
	// capture off, byte counts aside.
	out, err := json.Marshal(s.exp.GetSpans())
	if err != nil {
		t.Fatal(err)
	}
	if capture == 0 && bytes.Contains(out, []byte("SECRET")) {
		t.Errorf("capture off, yet the exported spans hold plaintext")
	}
	if bytes.Contains(out, []byte("AFTER-CLOSE")) {
		t.Errorf("the exported spans hold what was written after Close")
	}
}

// rawExchange sends head, waits for 100 Continue, sends body and returns
// every byte received up to the end of the chunked reply.
func rawExchange(t *testing.T, a *app, head, body string) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", a.Addr, &tls.Config{RootCAs: a.pki.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got bytes.Buffer
	br := bufio.NewReader(io.TeeReader(conn, &got))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v (got %q)", err, got.String())
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	for !bytes.HasSuffix(got.Bytes(), []byte("\r\n0\r\n\r\n")) {
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("reading the reply: %v (got %q)", err, got.String())
		}
	}
	if !bytes.Contains(got.Bytes(), []byte(body)) {
		t.Fatalf("/echo replied %q", got.String())
	}
	return got.Bytes()
}

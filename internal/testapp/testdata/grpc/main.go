// grpc is the end-to-end target for gRPC-Go (google.golang.org/grpc): a
// plaintext gRPC server for the Echo service of echopb/echo.proto, and an
// HTTP server whose handlers make gRPC client calls, so that a test drives
// both sides with plain HTTP requests:
//
//	/unary?code=NotFound&sleep_ms=0&deadline_ms=0&call_url=URL&traceparent=TP
//	                                  one Unary call (with TP in its metadata); body: the status code name
//	/cancel?sleep_ms=500&after_ms=50  a Unary call canceled by the client after after_ms; body: Canceled
//	/stream?n=100                     one ServerStream call reading n replies; body: "OK 100"
//	/bidi?n=100                       one Bidi call sending and receiving n; body: "OK 100"
//	/fan?n=1000&conc=50&grow=64       n Unary calls, conc at a time, on one connection, call i
//	                                  under i%(grow+1) frames of 512 bytes; body: "ok=1000 failed=0"
//	/http?url=URL                     a plain net/http GET; body: the HTTP status code
//	/grpc-addr                        the gRPC server's address
//
// The gRPC handlers take code, count and call_url from the request: the
// server GETs call_url (an HTTP client span under the gRPC server span)
// before it answers. ?target=host:port sends the client calls to another
// gRPC server than this one. It prints "grpc on ADDR" and then
// "listening on ADDR" (the HTTP address). Only API that exists from grpc
// v1.35.0 on is used, and the code builds with Go 1.16 and later.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"example.com/grpc/echopb"
)

// codeByName maps "NotFound" to codes.NotFound, for every code from OK to
// Unauthenticated.
var codeByName = func() map[string]codes.Code {
	m := map[string]codes.Code{"": codes.OK}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

// server implements echopb.EchoServer.
type server struct {
	echopb.UnimplementedEchoServer
}

// prepare does what every handler does before it answers: the optional GET
// of call_url, then the sleep, cut short by the caller's deadline or cancel.
func prepare(ctx context.Context, req *echopb.Request) error {
	if req.CallUrl != "" {
		if _, err := get(ctx, req.CallUrl); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
	}
	if req.SleepMs > 0 {
		t := time.NewTimer(time.Duration(req.SleepMs) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return status.Error(codes.DeadlineExceeded, ctx.Err().Error())
			}
			return status.Error(codes.Canceled, ctx.Err().Error())
		}
	}
	return nil
}

// result is the status the request asks for: nil for OK.
func result(req *echopb.Request) error {
	c, ok := codeByName[req.Code]
	if !ok {
		return status.Error(codes.InvalidArgument, "unknown code "+strconv.Quote(req.Code))
	}
	if c == codes.OK {
		return nil
	}
	return status.Error(c, "asked for "+req.Code)
}

func (server) Unary(ctx context.Context, req *echopb.Request) (*echopb.Reply, error) {
	if err := prepare(ctx, req); err != nil {
		return nil, err
	}
	if err := result(req); err != nil {
		return nil, err
	}
	return &echopb.Reply{Message: req.Message}, nil
}

func (server) ServerStream(req *echopb.Request, stream echopb.Echo_ServerStreamServer) error {
	if err := prepare(stream.Context(), req); err != nil {
		return err
	}
	for i := int32(0); i < req.Count; i++ {
		if err := stream.Send(&echopb.Reply{Message: req.Message, Index: i}); err != nil {
			return err
		}
	}
	return result(req)
}

func (server) Bidi(stream echopb.Echo_BidiServer) error {
	for i := int32(0); ; i++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&echopb.Reply{Message: req.Message, Index: i}); err != nil {
			return err
		}
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// get GETs url and returns the response's status code.
func get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// clients holds one ClientConn per target, shared by all handlers, as a
// real program would: many calls multiplex over one HTTP/2 connection.
type clients struct {
	self  string
	mu    sync.Mutex
	conns map[string]echopb.EchoClient
}

func (c *clients) get(r *http.Request) (echopb.EchoClient, error) {
	target := r.URL.Query().Get("target")
	if target == "" {
		target = c.self
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.conns[target]; ok {
		return cl, nil
	}
	// grpc.Dial rather than grpc.NewClient (v1.63 on): it exists in every
	// version the tests pin, and does not connect until the first call.
	conn, err := grpc.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	cl := echopb.NewEchoClient(conn)
	c.conns[target] = cl
	return cl, nil
}

// intParam is the integer query parameter name, or def when absent.
func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}

// deep calls f under n frames of 512 bytes each.
func deep(n int, f func()) {
	var pad [512]byte
	if n <= 0 {
		f()
		return
	}
	pad[n%len(pad)] = byte(n)
	deep(n-1, f)
	if pad[n%len(pad)] != byte(n) {
		panic("stack corrupted")
	}
}

// request builds the Echo request that the query parameters describe.
func request(r *http.Request) *echopb.Request {
	q := r.URL.Query()
	return &echopb.Request{
		Code:    q.Get("code"),
		Count:   int32(intParam(r, "count", 0)),
		SleepMs: int32(intParam(r, "sleep_ms", 0)),
		CallUrl: q.Get("call_url"),
		Message: q.Get("message"),
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "HTTP listen address")
	grpcAddr := flag.String("grpc", "127.0.0.1:0", "gRPC listen address")
	flag.Parse()

	gln, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gs := grpc.NewServer()
	echopb.RegisterEchoServer(gs, server{})
	go gs.Serve(gln)
	cs := &clients{self: gln.Addr().String(), conns: map[string]echopb.EchoClient{}}

	// client wraps a handler that needs an Echo client for the request's
	// target and writes what it returns as the body.
	client := func(f func(r *http.Request, c echopb.EchoClient) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := cs.get(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Fprint(w, f(r, c))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/grpc-addr", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, gln.Addr())
	})
	mux.HandleFunc("/unary", client(func(r *http.Request, c echopb.EchoClient) string {
		ctx := r.Context()
		if ms := intParam(r, "deadline_ms", 0); ms > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		// A traceparent in the call's metadata, as an SDK-instrumented
		// client sends one.
		if tp := r.URL.Query().Get("traceparent"); tp != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
		}
		_, err := c.Unary(ctx, request(r))
		return status.Code(err).String()
	}))
	mux.HandleFunc("/cancel", client(func(r *http.Request, c echopb.EchoClient) string {
		req := request(r)
		if req.SleepMs == 0 {
			req.SleepMs = 500
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		time.AfterFunc(time.Duration(intParam(r, "after_ms", 50))*time.Millisecond, cancel)
		_, err := c.Unary(ctx, req)
		return status.Code(err).String()
	}))
	mux.HandleFunc("/stream", client(func(r *http.Request, c echopb.EchoClient) string {
		req := request(r)
		req.Count = int32(intParam(r, "n", 1))
		stream, err := c.ServerStream(r.Context(), req)
		if err != nil {
			return status.Code(err).String() + " 0"
		}
		n := 0
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				return fmt.Sprintf("OK %d", n)
			}
			if err != nil {
				return fmt.Sprintf("%s %d", status.Code(err), n)
			}
			n++
		}
	}))
	mux.HandleFunc("/bidi", client(func(r *http.Request, c echopb.EchoClient) string {
		stream, err := c.Bidi(r.Context())
		if err != nil {
			return status.Code(err).String() + " 0"
		}
		n, total := 0, intParam(r, "n", 1)
		for i := 0; i < total; i++ {
			if err := stream.Send(&echopb.Request{Message: strconv.Itoa(i)}); err != nil {
				break // Recv below reports the stream's status
			}
			if _, err := stream.Recv(); err != nil {
				return fmt.Sprintf("%s %d", status.Code(err), n)
			}
			n++
		}
		stream.CloseSend()
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				return fmt.Sprintf("OK %d", n)
			}
			if err != nil {
				return fmt.Sprintf("%s %d", status.Code(err), n)
			}
			n++
		}
	}))
	mux.HandleFunc("/fan", client(func(r *http.Request, c echopb.EchoClient) string {
		n, conc := intParam(r, "n", 1), intParam(r, "conc", 10)
		if conc < 1 {
			conc = 1
		}
		grow := intParam(r, "grow", 0)
		var ok, failed int64
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			req := request(r)
			req.Message = strconv.Itoa(i)
			go func(depth int) {
				defer func() { <-sem; wg.Done() }()
				// With grow, each call starts at another stack depth, so
				// that the goroutine's stack grows inside gRPC's functions
				// in some of them; every reply must echo its request.
				deep(depth, func() {
					if rep, err := c.Unary(r.Context(), req); err != nil || rep.Message != req.Message {
						atomic.AddInt64(&failed, 1)
					} else {
						atomic.AddInt64(&ok, 1)
					}
				})
			}(i % (grow + 1))
		}
		wg.Wait()
		return fmt.Sprintf("ok=%d failed=%d", ok, failed)
	}))
	mux.HandleFunc("/http", func(w http.ResponseWriter, r *http.Request) {
		code, err := get(r.Context(), r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, code)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("grpc on %s\n", gln.Addr())
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

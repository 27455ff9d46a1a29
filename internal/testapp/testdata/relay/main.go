// relay is the end-to-end target for trace propagation: its handlers call
// another service (usually a second relay) in the ways Go programs do — from
// the handler's goroutine, from a goroutine it spawns, through an errgroup,
// fanned out to many goroutines — and /echo-traceparent returns the
// traceparent header a request arrived with. Builds with Go 1.13 and later.
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"math/big"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

var client = &http.Client{}

// call GETs url and returns the body, or the error text.
func call(url string, set func(*http.Request)) string {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	if set != nil {
		set(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := ioutil.ReadAll(resp.Body)
	return string(b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	useTLS := flag.Bool("tls", false, "serve HTTPS (HTTP/1.1 only) with a self-signed certificate")
	flag.Parse()
	// Calls to https:// URLs trust the other relay's self-signed certificate.
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo-traceparent", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Traceparent"))
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	})
	// The handler's own goroutine makes the call.
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, call(r.URL.Query().Get("url"), nil))
	})
	// A goroutine the handler spawns makes the call.
	mux.HandleFunc("/call-go", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan string)
		go func() { ch <- call(r.URL.Query().Get("url"), nil) }()
		fmt.Fprint(w, <-ch)
	})
	// Two nested goroutines away from the handler.
	mux.HandleFunc("/call-go-go", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan string)
		go func() {
			go func() { ch <- call(r.URL.Query().Get("url"), nil) }()
		}()
		fmt.Fprint(w, <-ch)
	})
	mux.HandleFunc("/call-errgroup", func(w http.ResponseWriter, r *http.Request) {
		var g errgroup.Group
		results := make([]string, 3)
		for i := range results {
			i := i
			g.Go(func() error {
				results[i] = call(r.URL.Query().Get("url"), nil)
				return nil
			})
		}
		g.Wait()
		fmt.Fprint(w, strings.Join(results, "\n"))
	})
	// An errgroup, made by WithContext when ctx=1, whose one goroutine
	// fails when fail=1: what the toy instrumentor of internal/toy reads.
	mux.HandleFunc("/errgroup", func(w http.ResponseWriter, r *http.Request) {
		g := &errgroup.Group{}
		if r.URL.Query().Get("ctx") == "1" {
			g, _ = errgroup.WithContext(r.Context())
		}
		fail := r.URL.Query().Get("fail") == "1"
		g.Go(func() error {
			if fail {
				return fmt.Errorf("failed on purpose")
			}
			return nil
		})
		fmt.Fprint(w, g.Wait())
	})
	// n goroutines, each one call.
	mux.HandleFunc("/fanout", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		results := make([]string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = call(r.URL.Query().Get("url"), nil)
			}(i)
		}
		wg.Wait()
		fmt.Fprint(w, strings.Join(results, "\n"))
	})
	// The app propagates its own trace context: uranus must keep it.
	mux.HandleFunc("/call-own-traceparent", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, call(r.URL.Query().Get("url"), func(req *http.Request) {
			req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		}))
	})
	mux.HandleFunc("/call-timeout", func(w http.ResponseWriter, r *http.Request) {
		c := &http.Client{Timeout: 50 * time.Millisecond}
		_, err := c.Get(r.URL.Query().Get("url"))
		fmt.Fprint(w, err)
	})
	// Requests whose bytes a network-level injector could corrupt, sent to
	// a checking server (the test's) that verifies each one: see wirecheck.
	mux.HandleFunc("/wirecheck", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		workers, _ := strconv.Atoi(q.Get("workers"))
		fmt.Fprint(w, wirecheck(q.Get("url"), q.Get("kind"), n, workers))
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *useTLS {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{selfSigned()}})
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// wirecheck sends n requests of one kind to url, from workers goroutines
// (each keeps its connection alive), and returns "ok N" or the first
// failure. Each request carries the SHA-256 of its body in X-Body-Sha256,
// which the checking server compares with what it received.
//
//	keepalive  GET, no body
//	body       POST with a 1 MiB body of known length
//	chunked    POST with a 256 KiB body sent chunked (length unknown)
//	bigheader  GET with 6 KiB of headers: the header block spans writes
//	own        GET carrying the app's own traceparent
//	pipelined  three GETs written at once on a raw connection (not a
//	           Transport: nothing of uranus's may touch them)
func wirecheck(url, kind string, n, workers int) string {
	if workers < 1 {
		workers = 1
	}
	tr := &http.Transport{MaxIdleConnsPerHost: workers, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	errs := make(chan string, workers)
	var wg sync.WaitGroup
	per := n / workers
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(seed))
			for j := 0; j < per; j++ {
				if err := wireRequest(c, rnd, url, kind); err != "" {
					errs <- fmt.Sprintf("request %d: %s", j, err)
					return
				}
			}
		}(int64(i))
	}
	wg.Wait()
	select {
	case e := <-errs:
		return "error: " + e
	default:
	}
	return fmt.Sprintf("ok %d", per*workers)
}

func wireRequest(c *http.Client, rnd *rand.Rand, url, kind string) string {
	var body []byte
	method := "GET"
	switch kind {
	case "body":
		body = make([]byte, 1<<20)
	case "chunked":
		body = make([]byte, 256<<10)
	}
	if body != nil {
		method = "POST"
		rnd.Read(body)
	}
	if kind == "pipelined" {
		return pipelined(url)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if kind == "chunked" {
			rd = ioutil.NopCloser(rd) // hides the length: sent chunked
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err.Error()
	}
	sum := sha256.Sum256(body)
	req.Header.Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
	switch kind {
	case "bigheader":
		for i := 0; i < 6; i++ {
			req.Header.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat(string(rune('a'+i)), 1000))
		}
	case "own":
		req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := ioutil.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprintf("status %d: %s", resp.StatusCode, b)
	}
	return ""
}

// pipelined writes three requests in one write on a connection of its own
// and reads the three responses.
func pipelined(url string) string {
	host := strings.TrimPrefix(url, "http://")
	path := "/"
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host, path = host[:i], host[i:]
	}
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	empty := sha256.Sum256(nil)
	var reqs bytes.Buffer
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&reqs, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Body-Sha256: %s\r\nX-Pipelined: %d\r\n\r\n", path, host, hex.EncodeToString(empty[:]), i)
	}
	if _, err := conn.Write(reqs.Bytes()); err != nil {
		return err.Error()
	}
	br := bufio.NewReader(conn)
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Sprintf("pipelined response %d: %v", i, err)
		}
		b, _ := ioutil.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Sprintf("pipelined status %d: %s", resp.StatusCode, b)
		}
	}
	return ""
}

// selfSigned makes a certificate for 127.0.0.1. Without NextProtos the
// listener offers no ALPN, so clients speak HTTP/1.1.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

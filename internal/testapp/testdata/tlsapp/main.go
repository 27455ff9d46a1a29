// tlsapp is the end-to-end target of the crypto/tls instrumentors: an HTTPS
// server whose handlers act as TLS clients in the ways that matter to them
// (net/http's Transport, which handshakes in goroutines of its own, and a
// raw tls.Dial from the handler's goroutine) and report the
// ConnectionState each side saw, so tests can compare it with the spans.
// Builds with Go 1.13 and later: no io.ReadAll, no any.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

var (
	addr       = flag.String("addr", "127.0.0.1:0", "listen address of the HTTPS server")
	strictAddr = flag.String("strict-addr", "127.0.0.1:0", "listen address of a second HTTPS server that accepts TLS 1.3 only")
	certFile   = flag.String("cert", "", "server certificate (PEM)")
	keyFile    = flag.String("key", "", "server key (PEM)")
	caFile     = flag.String("ca", "", "the CA clients trust (PEM)")
	roots      *x509.CertPool
)

func main() {
	flag.Parse()
	pem, err := ioutil.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	roots = x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("no certificate in %s", *caFile))
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		fail(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, describe(r.TLS))
	})
	mux.HandleFunc("/fetch", fetch)
	mux.HandleFunc("/raw", raw)
	mux.HandleFunc("/writes", writes)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := ioutil.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
		w.(http.Flusher).Flush() // so the response is written inside the handler
	})

	strict := listen(*strictAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, mux)
	fmt.Println("strict on", strict)
	main := listen(*addr, &tls.Config{Certificates: []tls.Certificate{cert}}, mux)
	fmt.Println("listening on", main)
	select {}
}

func listen(addr string, cfg *tls.Config, h http.Handler) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ErrorLog: nil}
	go func() { fail(srv.Serve(tls.NewListener(ln, cfg))) }()
	return ln.Addr().String()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tlsapp:", err)
	os.Exit(1)
}

// describe prints what the tests compare spans with.
func describe(s *tls.ConnectionState) string {
	if s == nil {
		return "no tls"
	}
	return fmt.Sprintf("version=%04x cipher=%04x sni=%s resumed=%v alpn=%s", s.Version, s.CipherSuite, s.ServerName, s.DidResume, s.NegotiatedProtocol)
}

// fetch GETs url with a Transport of its own (so every call dials and
// handshakes) and replies with the body and the client's view of the TLS
// connection, or the error. ca=none trusts nothing, maxver=12 offers at
// most TLS 1.2, host sets the name the certificate is checked against.
func fetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := &tls.Config{RootCAs: roots, ServerName: q.Get("host")}
	if q.Get("ca") == "none" {
		cfg.RootCAs = x509.NewCertPool()
	}
	if q.Get("maxver") == "12" {
		cfg.MaxVersion = tls.VersionTLS12
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(q.Get("url"))
	if err != nil {
		fmt.Fprint(w, "error: ", err)
		return
	}
	defer resp.Body.Close()
	body, _ := ioutil.ReadAll(resp.Body)
	fmt.Fprintf(w, "%s\nclient %s", body, describe(resp.TLS))
}

// raw dials addr with TLS from the handler's own goroutine, writes an HTTP
// request (head and body in two writes), reads the reply into a 1 MiB
// buffer until EOF, and replies with it. Around that it makes the calls a
// tap must survive: an empty Write and Read, and a Write and Read after
// Close.
func raw(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	conn, err := tls.Dial("tcp", q.Get("addr"), &tls.Config{RootCAs: roots, ServerName: q.Get("sni")})
	if err != nil {
		fmt.Fprint(w, "error: ", err)
		return
	}
	body := q.Get("body")
	head := "POST /ingest HTTP/1.1\r\nHost: " + q.Get("sni") + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	for _, b := range []string{head, "", body} {
		if _, err := io.WriteString(conn, b); err != nil {
			fmt.Fprint(w, "error: ", err)
			return
		}
	}
	conn.Read(nil)
	buf := make([]byte, 1<<20)
	var reply []byte
	for {
		n, err := conn.Read(buf)
		reply = append(reply, buf[:n]...)
		if err != nil {
			break
		}
	}
	state := conn.ConnectionState()
	conn.Close()
	if _, err := io.WriteString(conn, "SECRET-AFTER-CLOSE"); err == nil {
		fmt.Fprint(w, "error: wrote to a closed connection")
		return
	}
	conn.Read(buf)
	fmt.Fprintf(w, "%s\nclient %s", reply, describe(&state))
}

// writes dials addr and writes n lines, each from a new goroutine at a
// different stack depth: some of those Writes find too little stack in
// their own prologue and start over after morestack, which the tap must
// not count twice. Then it reads one line back (the peer's count).
func writes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, _ := strconv.Atoi(q.Get("n"))
	conn, err := tls.Dial("tcp", q.Get("addr"), &tls.Config{RootCAs: roots, ServerName: q.Get("sni")})
	if err != nil {
		fmt.Fprint(w, "error: ", err)
		return
	}
	defer conn.Close()
	for i := 0; i < n; i++ {
		line := []byte(fmt.Sprintf("line %04d\n", i))
		done := make(chan struct{})
		go func(i int) {
			defer close(done)
			descend(i, func() { conn.Write(line) })
		}(i)
		<-done
	}
	if err := conn.CloseWrite(); err != nil {
		fmt.Fprint(w, "error: ", err)
		return
	}
	line, _ := bufio.NewReader(conn).ReadString('\n')
	fmt.Fprint(w, strings.TrimSpace(line))
}

// descend calls f under depth small frames.
//
//go:noinline
func descend(depth int, f func()) {
	if depth == 0 {
		f()
		return
	}
	var pad [4]uint64
	pad[depth%4] = uint64(depth)
	descend(depth-1, f)
	sink += pad[0]
}

var sink uint64

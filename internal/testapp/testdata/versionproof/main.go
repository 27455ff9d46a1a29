// versionproof is the target of the version-proofing test
// (instrumentors/all): one process that exercises every instrumentor that
// is on by default, and a function for --func, with every Go release uranus
// supports. It serves
//
//   - HTTP/1.1 on a plain listener (and h2c there from Go 1.24),
//   - HTTPS on a second listener, HTTP/2 or HTTP/1.1 by ALPN, with a
//     certificate it makes at start,
//
// and its handlers act as net/http clients (/fetch) and call Mix (/mix).
// It prints "tls on ADDR" and "h2c true|false" before "listening on ADDR"
// (the plain listener).
//
// It builds with every Go toolchain from 1.13 on: nothing newer than Go
// 1.13 outside the files guarded by build tags.
package main

import (
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Mix is the function the test traces with --func.
//
//go:noinline
func Mix(key string, n int) int {
	h := n
	for i := 0; i < len(key); i++ {
		h = h*31 + int(key[i])
	}
	return h
}

func main() {
	mux := http.NewServeMux()
	// /status/CODE/ANYTHING replies CODE: the rest of the path only makes
	// each request's path its own.
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		ioutil.ReadAll(r.Body)
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/status/"), "/", 2)
		code, err := strconv.Atoi(parts[0])
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "%d %s\n", code, r.Proto)
	})
	mux.HandleFunc("/fetch", fetch)
	mux.HandleFunc("/mix", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Fprintf(w, "%d", Mix(r.URL.Query().Get("key"), n))
	})

	cfg, err := selfSigned()
	if err != nil {
		fail(err)
	}
	tlsLn := listen()
	secure := &http.Server{Handler: mux, TLSConfig: cfg}
	// ServeTLS offers h2 and http/1.1 by ALPN; the certificate is in
	// TLSConfig.
	go func() { fail(secure.ServeTLS(tlsLn, "", "")) }()

	ln := listen()
	plain := &http.Server{Handler: mux}
	h2c := enableH2C(plain)
	fmt.Printf("tls on %s\n", tlsLn.Addr())
	fmt.Printf("h2c %v\n", h2c)
	fmt.Printf("listening on %s\n", ln.Addr())
	fail(plain.Serve(ln))
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	return ln
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "versionproof:", err)
	os.Exit(1)
}

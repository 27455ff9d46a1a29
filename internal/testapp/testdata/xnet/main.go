// xnet is the end-to-end target for golang.org/x/net/http2's client: it
// serves HTTPS (HTTP/2 by ALPN) with a self-signed certificate and, on
// /call, GETs a URL with x/net's http2.Transport used on its own
// (via=xnet) or through net/http's Transport upgraded by
// http2.ConfigureTransport (via=configured). Builds with Go 1.18 and later.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

var (
	insecure   = &tls.Config{InsecureSkipVerify: true}
	direct     = &http.Client{Transport: &http2.Transport{TLSClientConfig: insecure}}
	configured = func() *http.Client {
		t := &http.Transport{TLSClientConfig: insecure}
		if err := http2.ConfigureTransport(t); err != nil {
			panic(err)
		}
		return &http.Client{Transport: t}
	}()
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Path[len("/status/"):])
		w.WriteHeader(code)
		fmt.Fprint(w, r.Proto)
	})
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		c := direct
		if r.URL.Query().Get("via") == "configured" {
			c = configured
		}
		resp, err := c.Get(r.URL.Query().Get("url"))
		if err != nil {
			fmt.Fprint(w, "error: ", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(w, "%d %s", resp.StatusCode, b)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned()}}}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.ServeTLS(ln, "", ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "xnet"},
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

// xnet is the end-to-end target for golang.org/x/net/http2: it serves
// HTTPS (HTTP/2 by ALPN) with a self-signed certificate, and the same
// handlers as h2c (HTTP/2 without TLS, prior knowledge) through x/net's
// h2c.NewHandler on a second listener. /call GETs a URL with x/net's
// http2.Transport used on its own (via=xnet) or through net/http's
// Transport upgraded by http2.ConfigureTransport (via=configured); /fan
// GETs a URL n times at once over one h2c connection (n streams). Builds
// with Go 1.18 and later.
package main

import (
	"context"
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
	"golang.org/x/net/http2/h2c"
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
	// h2c with prior knowledge: HTTP/2 over a plain connection.
	plain2 = &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
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
	mux.HandleFunc("/fan", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		codes := make(chan int, n)
		for i := 0; i < n; i++ {
			go func() {
				resp, err := plain2.Get(r.URL.Query().Get("url"))
				if err != nil {
					codes <- 0
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		for i := 0; i < n; i++ {
			fmt.Fprintln(w, <-codes)
		}
	})
	h2cLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("h2c on %s\n", h2cLn.Addr())
	go http.Serve(h2cLn, h2c.NewHandler(mux, &http2.Server{}))
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

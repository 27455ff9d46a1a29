// Command sample is what the offsets generator builds with every Go
// toolchain and reads struct layouts from. It is never run: it only has to
// reach every code path whose types the table records, so that the linker
// keeps those types in DWARF. It must build with Go 1.13, so no generics,
// no any, no io.ReadAll.
package main

import (
	"crypto/tls"
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", handle)
	registerPatterns(mux)

	cfg := &tls.Config{ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := ln.Addr().(*net.TCPAddr)
	fmt.Println(addr.IP, addr.Port, addr.Zone)

	// HTTP/1 server (net/http.conn, net/http.response) and TLS server with
	// HTTP/2 (net/http.http2responseWriter).
	srv := &http.Server{Handler: mux, TLSConfig: cfg}
	go srv.Serve(ln)
	go srv.ServeTLS(ln, "cert.pem", "key.pem")

	// crypto/tls client and server connections and their state.
	raw, err := ln.Accept()
	check(err)
	if tcp, ok := raw.(*net.TCPConn); ok {
		check(tcp.SetKeepAlive(true))
	}
	sc := tls.Server(raw, cfg)
	check(sc.Handshake())
	printState(sc.ConnectionState())
	cc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	check(err)
	printState(cc.ConnectionState())
	fmt.Println(cc.LocalAddr(), cc.RemoteAddr())

	u, err := url.Parse("https://user:secret@localhost/a%2Fb?q=1#frag")
	check(err)
	pw, set := u.User.Password()
	fmt.Println(u.Scheme, u.Opaque, u.User.Username(), pw, set, u.Host, u.Path, u.RawPath, u.RawQuery, u.Fragment)

	// HTTP client over HTTP/1 and HTTP/2 (net/http.persistConn).
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	req, err := http.NewRequest("GET", u.String(), strings.NewReader("body"))
	check(err)
	req.Header.Set("X-Sample", "1")
	resp, err := client.Do(req)
	check(err)
	body, err := ioutil.ReadAll(resp.Body)
	check(err)
	check(resp.Body.Close())
	fmt.Println(len(body), resp.Status, resp.StatusCode, resp.Proto, resp.ContentLength, resp.Request.URL, resp.TLS != nil)
	printHeader(resp.Header)

	// A plain map[string][]string, as http.Header is one.
	h := make(map[string][]string)
	h["k"] = append(h["k"], "v")
	delete(h, "x")
	printHeader(h)
}

func handle(w http.ResponseWriter, r *http.Request) {
	fmt.Println(r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor, r.ContentLength,
		r.Host, r.RemoteAddr, r.RequestURI, r.TLS != nil, r.Context(), r.Response != nil)
	printHeader(r.Header)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintln(w, "hello")
}

func printState(st tls.ConnectionState) {
	fmt.Println(st.Version, st.HandshakeComplete, st.DidResume, st.CipherSuite, st.ServerName, st.NegotiatedProtocol)
}

func printHeader(h map[string][]string) {
	for k, v := range h {
		fmt.Println(k, v)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

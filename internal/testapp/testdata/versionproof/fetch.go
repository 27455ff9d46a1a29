package main

import (
	"crypto/tls"
	"fmt"
	"io/ioutil"
	"net/http"
)

// fetch GETs the url query parameter with a Transport of its own (a new
// connection, and over TLS a new handshake, each time) and replies with
// what the client got: "STATUS PROTO TLSVERSION CIPHER ALPN", the TLS
// version and cipher suite in hex, each "-" when there is none. proto=h2
// asks for HTTP/2 over TLS, which a Transport with its own TLS settings
// does not otherwise; proto=h2c for HTTP/2 without TLS (Go 1.24 on). The
// client trusts any certificate.
func fetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: q.Get("proto") == "h2",
	}
	defer tr.CloseIdleConnections()
	if q.Get("proto") == "h2c" && !clientH2C(tr) {
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprint(w, "error: h2c needs Go 1.24 or later")
		return
	}
	resp, err := (&http.Client{Transport: tr}).Get(q.Get("url"))
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "error: ", err)
		return
	}
	ioutil.ReadAll(resp.Body)
	resp.Body.Close()
	version, cipher, alpn := "-", "-", "-"
	if resp.TLS != nil {
		version = fmt.Sprintf("%04x", resp.TLS.Version)
		cipher = fmt.Sprintf("%04x", resp.TLS.CipherSuite)
		if resp.TLS.NegotiatedProtocol != "" {
			alpn = resp.TLS.NegotiatedProtocol
		}
	}
	fmt.Fprintf(w, "%d %s %s %s %s", resp.StatusCode, resp.Proto, version, cipher, alpn)
}

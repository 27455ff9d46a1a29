//go:build go1.24
// +build go1.24

package main

import "net/http"

// enableH2C serves HTTP/2 with prior knowledge on srv's plain listener as
// well as HTTP/1.1, as Go 1.24 added to net/http.
func enableH2C(srv *http.Server) bool {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	return true
}

// clientH2C makes tr speak HTTP/2 with prior knowledge to http:// URLs.
func clientH2C(tr *http.Transport) bool {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = &p
	return true
}

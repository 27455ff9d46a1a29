//go:build go1.24
// +build go1.24

package main

import "net/http"

// enableH2C serves HTTP/2 with prior knowledge on the plain listener, as
// Go 1.24 added to net/http.
func enableH2C(srv *http.Server) error {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	return nil
}

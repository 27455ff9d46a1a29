//go:build !go1.22
// +build !go1.22

package main

import "net/http"

func registerPatterns(mux *http.ServeMux) {
	mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) {})
}

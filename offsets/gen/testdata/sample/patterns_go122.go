//go:build go1.22
// +build go1.22

package main

import (
	"fmt"
	"net/http"
)

// registerPatterns uses Go 1.22 ServeMux patterns (net/http.pattern).
func registerPatterns(mux *http.ServeMux) {
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.PathValue("id"))
	})
}

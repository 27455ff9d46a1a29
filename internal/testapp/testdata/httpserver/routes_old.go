//go:build !go1.22
// +build !go1.22

package main

import (
	"fmt"
	"net/http"
	"strings"
)

func registerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/users/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s\n", strings.TrimPrefix(r.URL.Path, "/users/"))
	})
}

//go:build go1.22
// +build go1.22

package main

import (
	"fmt"
	"net/http"
)

func registerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user %s\n", r.PathValue("id"))
	})
}

//go:build !go1.24
// +build !go1.24

package main

import "net/http"

// Before Go 1.24 net/http has no h2c of its own.

func enableH2C(*http.Server) bool { return false }

func clientH2C(*http.Transport) bool { return false }

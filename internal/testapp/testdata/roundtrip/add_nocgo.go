//go:build !cgo
// +build !cgo

package main

//go:noinline
func add(a, b int) int { return a + b }

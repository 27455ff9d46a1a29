// Package bpf holds uranus's kernel side: the C programs, the shared header
// uranus.h (Go ABI access, event header, shared maps), and the Go code and
// objects bpf2go generates from them. The //go:generate lines live next to
// the Go code that uses each program (instrumentors/<library>, attach); run
// `go generate ./...` after editing C, with clang and libbpf-dev installed.
package bpf

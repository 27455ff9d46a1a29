// Package goroutines carries the active span into goroutines started inside
// it, so spans recorded in a goroutine a handler spawned — however deep —
// get the handler's span as parent. It records no spans itself, and costs
// one probe hit per goroutine the target creates: net/http alone starts one
// per request (its background read), making a server request 3 hits instead
// of 2. So it is off by default; without it, Go >= 1.21 targets still nest
// one level of goroutines through g.parentGoid, at no cost.
package goroutines

import (
	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../../bpf -go-package bpf Goroutines ../../bpf/goroutines.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:      "goroutines",
	Doc:     "goroutines started inside a span inherit it, at any depth (1 probe hit per goroutine created; off by default)",
	Library: "Go runtime goroutine creation",
	Spec:    bpf.LoadGoroutines,
	Probes: []instrumentors.Probe{{
		Symbol: "runtime.newproc1",
		Return: "newproc1_return",
	}},
	Consts: []instrumentors.Const{
		{Name: "off_g_m", Field: offsets.Field{Struct: "runtime.g", Member: "m"}},
		{Name: "off_m_curg", Field: offsets.Field{Struct: "runtime.m", Member: "curg"}},
		{Name: "off_m_p", Field: offsets.Field{Struct: "runtime.m", Member: "p"}},
		{Name: "off_p_runnext", Field: offsets.Field{Struct: "runtime.p", Member: "runnext"}},
	},
	Values: []instrumentors.Value{
		// newproc1(fn, argp, narg int32, callergp, callerpc) put the new
		// goroutine in runnext itself and returned nothing before Go 1.15;
		// from 1.15 it returns it, after five argument words on the stack
		// until the register ABI (checked in the 1.14.15, 1.15.2 and 1.16.15
		// sources).
		{Name: "newg_in_runnext", GoVersions: "< 1.15", Value: 1},
		{Name: "newproc1_arg_words", GoVersions: ">= 1.15, < 1.17", Value: 5},
	},
	Stats:        [4]string{"goroutines that inherited a span"},
	OffByDefault: true,
}

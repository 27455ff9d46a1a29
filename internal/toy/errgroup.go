// Package toy holds an instrumentor written only to prove the instrumentor
// contract end to end (TestToyInstrumentor): one folder (this one), one C
// file (bpf/toy_errgroup.c) and one line in a registry, for a library
// outside the standard library whose struct members are keyed by the
// module's version (golang.org/x/sync's errgroup). uranus does not ship it.
package toy

import (
	"fmt"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
)

const module = "golang.org/x/sync"

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir . -go-package toy -type event Errgroup ../../bpf/toy_errgroup.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
var Instrumentor = &instrumentors.Instrumentor{
	ID:           "errgroup",
	Doc:          "golang.org/x/sync/errgroup: a span per Group.Wait (a toy, for tests)",
	Library:      "golang.org/x/sync/errgroup",
	Module:       module,
	Spec:         LoadErrgroup,
	InFlight:     "calls",
	InFlightKind: trace.SpanKindInternal,
	Probes: []instrumentors.Probe{{
		Symbol: "golang.org/x/sync/errgroup.(*Group).Wait",
		Entry:  "wait_entry",
		Return: "wait_return",
	}},
	Consts: []instrumentors.Const{
		{Name: "off_group_cancel", Field: offsets.Field{Struct: "golang.org/x/sync/errgroup.Group", Member: "cancel", Module: module}},
		{Name: "off_group_err", Field: offsets.Field{Struct: "golang.org/x/sync/errgroup.Group", Member: "err", Module: module}},
	},
	Convert: convert,
}

func convert(record []byte, s *otel.Span, _ instrumentors.Target) error {
	var e ErrgroupEvent
	if len(record) < int(unsafe.Sizeof(e)) {
		return fmt.Errorf("errgroup record of %d bytes, want %d", len(record), unsafe.Sizeof(e))
	}
	e = *(*ErrgroupEvent)(unsafe.Pointer(&record[0]))
	s.Name = "errgroup.Wait"
	s.Kind = trace.SpanKindInternal
	s.Attrs = append(s.Attrs,
		attribute.Bool("errgroup.with_context", e.WithContext != 0),
		attribute.Bool("errgroup.failed", e.Failed != 0))
	return nil
}

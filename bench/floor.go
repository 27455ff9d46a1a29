package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/bpf"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../bpf -go-package bpf Floor ../bpf/floor.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// probedFunc is where every configuration under test puts its probes.
const probedFunc = "net/http.serverHandler.ServeHTTP"

// floorProbes is the no-op program pair attached to one process: entry and
// every RET of probedFunc, as uranus attaches its server programs.
type floorProbes struct {
	objs  floorObjects
	links []link.Link
	sites int
}

// floorObjects is the part of the floor collection the benchmark loads:
// the programs and their counters, not the ring buffer and span map that
// every program including uranus.h declares but these never touch.
type floorObjects struct {
	Entry  *ebpf.Program `ebpf:"floor_entry"`
	Return *ebpf.Program `ebpf:"floor_return"`
	Stats  *ebpf.Map     `ebpf:"stats"`
}

// attachFloor loads bpf/floor.c and attaches it to pid, running exe.
func attachFloor(exe string, pid int) (*floorProbes, error) {
	bin, err := binary.Open(exe)
	if err != nil {
		return nil, err
	}
	defer bin.Close()
	fn, err := bin.Func(probedFunc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", exe, err)
	}
	f := &floorProbes{}
	spec, err := bpf.LoadFloor()
	if err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading the floor program: %+v", ve)
		}
		return nil, fmt.Errorf("loading the floor program: %w", err)
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		f.close()
		return nil, err
	}
	at := func(prog *ebpf.Program, off uint64) error {
		l, err := ex.Uprobe(probedFunc, prog, &link.UprobeOptions{Address: fn.FileOffset, Offset: off, PID: pid})
		if err != nil {
			return fmt.Errorf("attaching the floor program at %s+%#x: %w", probedFunc, off, err)
		}
		f.links = append(f.links, l)
		f.sites++
		return nil
	}
	// RET sites first, as uranus does, so no call is entered unwatched.
	for _, off := range fn.RetOffsets {
		if err := at(f.objs.Return, off); err != nil {
			f.close()
			return nil, err
		}
	}
	if err := at(f.objs.Entry, 0); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// hits sums the entry and RET counters over every CPU.
func (f *floorProbes) hits() (uint64, error) {
	var total uint64
	for _, key := range []uint32{0, 1} { // STAT_ENTRY, STAT_RETURN in bpf/uranus.h
		var perCPU []uint64
		if err := f.objs.Stats.Lookup(key, &perCPU); err != nil {
			return 0, fmt.Errorf("reading the floor counters: %w", err)
		}
		for _, v := range perCPU {
			total += v
		}
	}
	return total, nil
}

func (f *floorProbes) close() {
	for i := len(f.links) - 1; i >= 0; i-- {
		f.links[i].Close()
	}
	f.links = nil
	if f.objs.Entry != nil {
		f.objs.Entry.Close()
	}
	if f.objs.Return != nil {
		f.objs.Return.Close()
	}
	if f.objs.Stats != nil {
		f.objs.Stats.Close()
	}
}

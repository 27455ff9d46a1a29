package target

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/uranus-otel/uranus/bpf"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../bpf -go-package bpf -type proc_event Procs ../bpf/procs.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// execWatch reports the pid of every process that executes a program or
// exits, from raw tracepoints on sched_process_exec and sched_process_exit
// (bpf/procs.c).
type execWatch struct {
	objs   bpf.ProcsObjects
	links  []link.Link
	reader *ringbuf.Reader
}

func watchExecs() (*execWatch, error) {
	spec, err := bpf.LoadProcs()
	if err != nil {
		return nil, err
	}
	dev, ino := PIDNamespace()
	for name, v := range map[string]uint64{"scope_pidns_dev": dev, "scope_pidns_ino": ino} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
	}
	w := &execWatch{}
	if err := spec.LoadAndAssign(&w.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel rejected the exec watch: %v", ve)
		}
		return nil, err
	}
	for name, prog := range map[string]*ebpf.Program{"sched_process_exec": w.objs.OnExec, "sched_process_exit": w.objs.OnExit} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("attaching to the %s tracepoint: %w", name, err)
		}
		w.links = append(w.links, l)
	}
	if w.reader, err = ringbuf.NewReader(w.objs.Execs); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *execWatch) close() {
	for _, l := range w.links {
		l.Close()
	}
	w.objs.Close()
}

// procEvent is a process that executed a program, or exited.
type procEvent = bpf.ProcsProcEvent

// run sends each event until ctx is done, then releases everything.
func (w *execWatch) run(ctx context.Context, events chan<- procEvent) {
	go func() {
		<-ctx.Done()
		w.reader.Close() // ends Read below
	}()
	defer w.close()
	var rec ringbuf.Record
	for {
		if err := w.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		if len(rec.RawSample) < 8 {
			continue
		}
		ev := procEvent{Pid: binary.NativeEndian.Uint32(rec.RawSample), Exited: binary.NativeEndian.Uint32(rec.RawSample[4:])}
		select {
		case events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

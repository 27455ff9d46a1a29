package attach

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/uranus-otel/uranus/bpf"
	"github.com/uranus-otel/uranus/instrumentors"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-dir ../bpf -go-package bpf -type wire_key -type wire_request -type wire_h2_key Wire ../bpf/wire.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// Propagation is how trace context reaches the services a target calls.
type Propagation string

const (
	// PropagationAuto picks network where the socket programs attach,
	// else memory where the kernel allows it, else off.
	PropagationAuto Propagation = "auto"
	// PropagationNetwork inserts traceparent into outgoing HTTP/1 requests
	// as they leave the socket (sockops + sk_msg on the cgroup v2 root):
	// nothing is written into the target's memory, so kernel lockdown
	// does not stand in the way.
	PropagationNetwork Propagation = "network"
	// PropagationMemory writes traceparent into the target's request
	// buffer with bpf_probe_write_user, which kernel lockdown forbids.
	PropagationMemory Propagation = "memory"
	// PropagationOff sends nothing: each service's spans form their own
	// traces, nested within the process.
	PropagationOff Propagation = "off"
)

// ParsePropagation reads a --propagation value.
func ParsePropagation(s string) (Propagation, error) {
	switch p := Propagation(strings.ToLower(strings.TrimSpace(s))); p {
	case PropagationAuto, PropagationNetwork, PropagationMemory, PropagationOff:
		return p, nil
	case "":
		return PropagationAuto, nil
	}
	return "", fmt.Errorf("propagation %q: use auto, network, memory or off", s)
}

// wire is the socket half of network-level propagation, loaded once for
// all targets: the uprobes of each target announce requests in its maps.
type wire struct {
	objs   wireObjects
	links  []link.Link
	cgroup string
}

// wireObjects are the parts of bpf/wire.c that uranus loads; its other
// maps (the shared ring buffer, say, which it never uses) are not created.
type wireObjects struct {
	Sockops  *ebpf.Program `ebpf:"wire_sockops"`
	Msg      *ebpf.Program `ebpf:"wire_msg"`
	Requests *ebpf.Map     `ebpf:"wire_requests"`
	Tgids    *ebpf.Map     `ebpf:"wire_tgids"`
	Sent     *ebpf.Map     `ebpf:"wire_sent"`
	Socks    *ebpf.Map     `ebpf:"wire_socks"`
	Stats    *ebpf.Map     `ebpf:"wire_stats"`
	Received *ebpf.Map     `ebpf:"wire_received"`
	Ports    *ebpf.Map     `ebpf:"wire_listen_ports"`
	H2       *ebpf.Map     `ebpf:"wire_h2_streams"`
	H2Conns  *ebpf.Map     `ebpf:"wire_h2_conns"`
}

// WireCounters mirror enum wire_stat in bpf/wire.c.
type WireCounters struct {
	Enrolled     uint64 // connections of traced processes watched
	EnrollFailed uint64 // connections the socket map refused
	Injected     uint64 // traceparent headers inserted
	NotHTTP1     uint64 // announced requests whose first bytes were not an HTTP/1 request line
	Failed       uint64 // messages the kernel would not grow (sent unchanged)
	Unannounced  uint64 // messages on watched connections with no request announced
	Decided      uint64 // later messages of a request (bodies), passed as they are
	OptWritten   uint64 // segments of TLS requests that carried their context in a TCP option
	OptNoRoom    uint64 // segments with no room left for the option (sent without it)
	Parsing      uint64 // accepted connections of traced servers whose options are read
	OptRead      uint64 // segments whose option a traced server received
	H2Injected   uint64 // traceparent fields added to HTTP/2 HEADERS frames (h2c)
	H2Unparsed   uint64 // messages of HTTP/2 connections with streams announced that were not whole frames (sent unchanged)
	H2NoRoom     uint64 // announced HEADERS frames that could not take the field (frame size, padding, CONTINUATION)
}

// openWire loads the socket programs and attaches them: sockops to the
// cgroup v2 root, so that every connection on the host passes it (only
// those of traced processes are enrolled), and sk_msg to the socket map.
// Both as bpf_links, which the kernel removes when uranus exits, however
// it exits.
func openWire() (*wire, error) {
	return loadWire(true)
}

// loadWire loads the socket programs, and attaches them when attachLinks
// is set; without, it only tells whether they would load.
func loadWire(attachLinks bool) (*wire, error) {
	cg, unmount, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	// A hierarchy uranus mounted itself is needed only to open it: the
	// link holds the cgroup, and no mount of uranus's outlives this call.
	defer unmount()
	spec, err := bpf.LoadWire()
	if err != nil {
		return nil, fmt.Errorf("loading the socket programs' spec: %w", err)
	}
	w := &wire{cgroup: cg}
	if err := spec.LoadAndAssign(&w.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel rejected the socket programs: %+v", ve)
		}
		return nil, permissionHint("loading the socket programs (sockops, sk_msg)", err)
	}
	if !attachLinks {
		return w, nil
	}
	// sk_msg first: a socket enrolled before it is attached would not be
	// watched.
	msg, err := link.AttachRawLink(link.RawLinkOptions{
		Target:  w.objs.Socks.FD(),
		Program: w.objs.Msg,
		Attach:  ebpf.AttachSkMsgVerdict,
	})
	if err != nil {
		w.close()
		return nil, permissionHint("attaching the sk_msg program to its socket map (needs Linux 6.10 or later for a bpf_link)", err)
	}
	w.links = append(w.links, msg)
	ops, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupSockOps, Program: w.objs.Sockops})
	if err != nil {
		w.close()
		return nil, permissionHint("attaching the sockops program to cgroup "+cg, err)
	}
	w.links = append(w.links, ops)
	return w, nil
}

func (w *wire) close() {
	for i := len(w.links) - 1; i >= 0; i-- {
		w.links[i].Close()
	}
	w.links = nil
	for _, p := range []*ebpf.Program{w.objs.Sockops, w.objs.Msg} {
		if p != nil {
			p.Close()
		}
	}
	for _, m := range []*ebpf.Map{w.objs.Requests, w.objs.Tgids, w.objs.Sent, w.objs.Socks, w.objs.Stats, w.objs.Received, w.objs.Ports, w.objs.H2, w.objs.H2Conns} {
		if m != nil {
			m.Close()
		}
	}
}

// wireMap returns the socket programs' map that every target's collection
// uses in place of its own, by name; nil when there is none.
func (a *Attacher) wireMap(name string) *ebpf.Map {
	if a.wire == nil {
		return nil
	}
	switch name {
	case "wire_requests":
		return a.wire.objs.Requests
	case "wire_tgids":
		return a.wire.objs.Tgids
	case "wire_sent":
		return a.wire.objs.Sent
	case "wire_received":
		return a.wire.objs.Received
	case "wire_listen_ports":
		return a.wire.objs.Ports
	case "wire_h2_streams":
		return a.wire.objs.H2
	case "wire_h2_conns":
		return a.wire.objs.H2Conns
	}
	return nil
}

// enroll watches the connections process tgid opens from now on, for the
// programs of source (forget removes it with them).
func (w *wire) enroll(tgid, source uint32) {
	w.objs.Tgids.Update(tgid, source, ebpf.UpdateNoExist)
}

// forget removes the processes that the given sources enrolled, and what
// they left in the request maps (a process that exited mid-request).
func (w *wire) forget(sources map[uint32]bool) {
	var tgid, src uint32
	gone := map[uint32]bool{}
	it := w.objs.Tgids.Iterate()
	for it.Next(&tgid, &src) {
		if sources[src] {
			gone[tgid] = true
		}
	}
	for t := range gone {
		w.objs.Tgids.Delete(t)
	}
	var key bpf.WireWireKey
	var req bpf.WireWireRequest
	var keys []bpf.WireWireKey
	for it := w.objs.Requests.Iterate(); it.Next(&key, &req); {
		if gone[key.Tgid] {
			keys = append(keys, key)
		}
	}
	for _, k := range keys {
		w.objs.Requests.Delete(k)
	}
	var h2 bpf.WireWireH2Key
	var sc bpf.CoreSpanCtx
	var streams []bpf.WireWireH2Key
	for it := w.objs.H2.Iterate(); it.Next(&h2, &sc); {
		if gone[h2.Conn.Tgid] {
			streams = append(streams, h2)
		}
	}
	for _, k := range streams {
		w.objs.H2.Delete(k)
	}
	var pending uint64
	keys = keys[:0]
	for it := w.objs.H2Conns.Iterate(); it.Next(&key, &pending); {
		if gone[key.Tgid] {
			keys = append(keys, key)
		}
	}
	for _, k := range keys {
		w.objs.H2Conns.Delete(k)
	}
	var span uint64
	var spans []uint64
	for it := w.objs.Sent.Iterate(); it.Next(&span, &tgid); {
		if gone[tgid] {
			spans = append(spans, span)
		}
	}
	for _, s := range spans {
		w.objs.Sent.Delete(s)
	}
}

// fields lists c's counters in the order of enum wire_stat.
func (c *WireCounters) fields() []*uint64 {
	return []*uint64{&c.Enrolled, &c.EnrollFailed, &c.Injected, &c.NotHTTP1, &c.Failed, &c.Unannounced, &c.Decided,
		&c.OptWritten, &c.OptNoRoom, &c.Parsing, &c.OptRead, &c.H2Injected, &c.H2Unparsed, &c.H2NoRoom}
}

func (w *wire) counters() WireCounters {
	var c WireCounters
	for i, f := range c.fields() {
		var perCPU []uint64
		if err := w.objs.Stats.Lookup(uint32(i), &perCPU); err == nil {
			for _, v := range perCPU {
				*f += v
			}
		}
	}
	return c
}

// cgroup2Root finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on unified systems, /sys/fs/cgroup/unified on hybrid ones.
// When none is mounted it mounts one; unmount removes that mount again.
func cgroup2Root() (dir string, unmount func(), err error) {
	none := func() {}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", none, fmt.Errorf("finding the cgroup v2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], none, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", none, fmt.Errorf("finding the cgroup v2 mount: %w", err)
	}
	// A container often sees no cgroup v2 mount, though its processes are
	// in the hierarchy: mount it, for as long as it takes to attach.
	dir, err = mountCgroup2()
	if err != nil {
		return "", none, fmt.Errorf("no cgroup v2 hierarchy is mounted, and mounting one failed (%v): network-level propagation attaches to it "+
			"(mount one: mount -t cgroup2 none /sys/fs/cgroup/unified), or use --propagation memory or off", err)
	}
	return dir, func() {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		os.Remove(dir)
	}, nil
}

// mountCgroup2 mounts the cgroup v2 hierarchy on a directory of its own,
// in the first writable place of a read-only container.
func mountCgroup2() (string, error) {
	var errs []error
	for _, base := range []string{"/run", "/dev/shm", "/tmp"} {
		dir := base + "/uranus-cgroup2"
		if err := os.MkdirAll(dir, 0o700); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := syscall.Mount("none", dir, "cgroup2", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
			os.Remove(dir)
			errs = append(errs, fmt.Errorf("mount -t cgroup2 none %s: %w", dir, err))
			continue
		}
		return dir, nil
	}
	return "", errors.Join(errs...)
}

// PropagationFor says which mode uranus would run with when asked for want,
// and why, without attaching anything (uranus inspect).
func PropagationFor(want Propagation) (Propagation, string, error) {
	got, w, why, err := resolve(want, func() (*wire, error) { return loadWire(false) })
	if w != nil {
		w.close()
	}
	return got, why, err
}

// resolvePropagation turns the requested mode into the one that runs, with
// the reason said once at start; w is the loaded socket half when the
// result is network.
func resolvePropagation(want Propagation) (got Propagation, w *wire, why string, err error) {
	return resolve(want, openWire)
}

func resolve(want Propagation, openWire func() (*wire, error)) (got Propagation, w *wire, why string, err error) {
	switch want {
	case PropagationOff:
		return PropagationOff, nil, "asked for", nil
	case PropagationMemory:
		if !InjectionAllowed() {
			return "", nil, "", fmt.Errorf("--propagation memory: kernel lockdown %q forbids BPF writes to process memory; use --propagation network (or auto)", Lockdown())
		}
		return PropagationMemory, nil, "asked for", nil
	case PropagationNetwork:
		w, err := openWire()
		if err != nil {
			return "", nil, "", fmt.Errorf("--propagation network: %w", err)
		}
		return PropagationNetwork, w, "asked for", nil
	}
	w, err = openWire()
	if err == nil {
		return PropagationNetwork, w, "socket programs load and attach to cgroup " + w.cgroup, nil
	}
	if InjectionAllowed() {
		return PropagationMemory, nil, "socket programs unavailable (" + err.Error() + "); the kernel allows writes to process memory", nil
	}
	return PropagationOff, nil, fmt.Sprintf("socket programs unavailable (%v) and kernel lockdown %q forbids writes to process memory: "+
		"each service's spans form traces of their own", err, Lockdown()), nil
}

// features are the probe features the propagation mode turns on.
func (p Propagation) features() map[string]bool {
	return map[string]bool{
		instrumentors.FeatureWire:   p == PropagationNetwork,
		instrumentors.FeatureInject: p == PropagationMemory,
	}
}

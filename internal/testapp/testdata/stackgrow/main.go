// stackgrow is the target of the reliability tests. Every request makes its
// goroutine's stack grow several times (deep recursion through large frames)
// while the goroutine hops between threads (runtime.Gosched, blocking
// syscalls, channel hand-offs): the situation in which a uretprobe's
// replaced return address kills a Go program. Each response is a digest of
// what the frames held after the stack moved, so a corrupted stack shows up
// as a different body, not only as a crash.
//
// It builds with every Go toolchain from 1.13 on: no generics, no APIs newer
// than Go 1.13.
package main

import (
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

var (
	depth   = flag.Int("depth", 40, "recursion depth of each request (each level has a 6 KiB frame)")
	procs   = flag.Int("procs", 4, "GOMAXPROCS: more Ps than cores, so goroutines change threads")
	gen     = flag.Int("generation", 1, "how many times this process has exec'd itself, plus one")
	next    = flag.String("next", "", "executable that GET /reexec replaces this image with (default: this one)")
	addrArg = flag.String("addr", "127.0.0.1:0", "listen address")
)

var (
	served   uint64 // requests answered
	digest   uint64 // sum of every response's digest: independent of request order
	moved    uint64 // requests whose stack moved (grew) while they were handled
	migrated uint64 // requests that continued on another thread at least once
	self     string // "host:port" this server listens on, for /call
	relay    = make(chan hop)
)

func main() {
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	go func() {
		// A goroutine hand-off: the requester parks and is woken up by
		// another goroutine, possibly on another thread.
		for h := range relay {
			h.reply <- h.v*0x9e3779b97f4a7c15 + 1
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("/work/", func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/work/"), 10, 64)
		handle(w, seed, false)
	})
	mux.HandleFunc("/call/", func(w http.ResponseWriter, r *http.Request) {
		// As /work, but half-way down the recursion the handler calls this
		// server's /work over HTTP, so an outgoing request returns into a
		// stack that has moved.
		seed, _ := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/call/"), 10, 64)
		handle(w, seed, true)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		// Not printed: how often stacks moved and goroutines changed
		// threads depends on scheduling, and the output must not.
		fmt.Fprintf(w, "served %d moved %d migrated %d\n",
			atomic.LoadUint64(&served), atomic.LoadUint64(&moved), atomic.LoadUint64(&migrated))
	})
	mux.HandleFunc("/reexec", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "re-executing")
		go reexec()
	})

	ln, err := net.Listen("tcp", *addrArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	self = ln.Addr().String()
	fmt.Printf("generation %d\n", *gen)
	fmt.Printf("listening on %s\n", self)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		// What the app itself prints; the tests compare it with and
		// without uranus attached.
		fmt.Printf("served %d requests, digest %016x\n", atomic.LoadUint64(&served), atomic.LoadUint64(&digest))
		fmt.Fprintln(os.Stderr, "stopping")
		os.Exit(0)
	}()
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// handle answers one request. A local's address changes when the runtime
// copies the goroutine's stack to a larger one: that is how it tells that
// the stack moved under the handler (and under net/http's frames above it).
func handle(w http.ResponseWriter, seed uint64, call bool) {
	var marker byte
	before := uintptr(unsafe.Pointer(&marker))
	st := walk{call: call}
	d := recurse(seed, *depth, &st)
	if uintptr(unsafe.Pointer(&marker)) != before {
		atomic.AddUint64(&moved, 1)
	}
	if st.migrated {
		atomic.AddUint64(&migrated, 1)
	}
	n := atomic.AddUint64(&served, 1)
	atomic.AddUint64(&digest, d)
	if n%10000 == 0 {
		fmt.Printf("served %d\n", n)
	}
	fmt.Fprintf(w, "%016x\n", d)
}

// hop is a value handed to the relay goroutine and the channel its answer
// comes back on.
type hop struct {
	v     uint64
	reply chan uint64
}

// walk is what one request's recursion carries along.
type walk struct {
	call     bool // call this server half-way down
	migrated bool // the goroutine continued on another thread
}

// recurse fills a large frame, goes one level deeper, then digests the frame
// again: the bytes must have survived every stack copy made meanwhile.
func recurse(seed uint64, level int, st *walk) uint64 {
	var frame [6144]byte
	x := seed*0x9e3779b97f4a7c15 + uint64(level)
	for i := 0; i < len(frame); i += 64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		frame[i] = byte(x)
	}
	tid := syscall.Gettid()
	switch {
	case level%8 == 0:
		runtime.Gosched()
	case level%20 == 1:
		// A blocking system call: the thread may lose its P and the
		// goroutine resume on another thread.
		ts := syscall.Timespec{Nsec: 20000}
		syscall.Nanosleep(&ts, nil)
	case level%20 == 11:
		h := hop{x, make(chan uint64)}
		relay <- h
		x ^= <-h.reply
	}
	if syscall.Gettid() != tid {
		st.migrated = true
	}
	var below uint64
	if level > 0 {
		below = recurse(x, level-1, st)
	}
	if st.call && level == *depth/2 {
		below ^= callSelf(x % 1000)
	}
	h := below ^ 0xcbf29ce484222325
	for i := 0; i < len(frame); i += 64 {
		h ^= uint64(frame[i])
		h *= 0x100000001b3
	}
	return h
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}

func callSelf(seed uint64) uint64 {
	resp, err := client.Get(fmt.Sprintf("http://%s/work/%d", self, seed))
	if err != nil {
		fmt.Fprintln(os.Stderr, "call:", err)
		return 0
	}
	defer resp.Body.Close()
	b, _ := ioutil.ReadAll(resp.Body)
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	return v
}

// reexec replaces this process image (same pid) with the next generation,
// listening on the same address.
func reexec() {
	time.Sleep(50 * time.Millisecond) // let the reply go out
	exe := *next
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			fmt.Fprintln(os.Stderr, "reexec:", err)
			os.Exit(1)
		}
	}
	args := []string{exe, "-addr", self, "-depth", strconv.Itoa(*depth), "-procs", strconv.Itoa(*procs),
		"-generation", strconv.Itoa(*gen + 1)}
	fmt.Printf("exec %s\n", exe)
	if err := syscall.Exec(exe, args, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "reexec:", err)
		os.Exit(1)
	}
}

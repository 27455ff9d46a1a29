package reliability

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/internal/e2e"
)

// Crash-freedom: uranus probes every RET instruction instead of using
// uretprobes, because a uretprobe swaps the return address on the
// goroutine's stack and the Go runtime crashes when it copies that stack to
// grow it. The stackgrow sample makes every request grow its stack several
// times and hop between threads; the test sends the same requests to a copy
// that uranus does not watch and to one it does, and checks that every
// response and everything the program prints is the same, and that every
// request became a span with nothing lost.
//
// Sizes: 100,000 requests with Go 1.16 (stack ABI) and the newest release
// (register ABI, Swiss-table maps), 5,000 with every other version
// (e2e.Versions); under -short, 2,000 with e2e.Short. URANUS_CRASH_REQUESTS
// sets one size for every version (URANUS_GO_VERSIONS picks the versions).
func TestCrashFreedom(t *testing.T) {
	e2e.RequireBPF(t)
	for _, v := range e2e.TestVersions() {
		n := crashRequests(v)
		t.Run(fmt.Sprintf("go%s-%dreq", v, n), func(t *testing.T) {
			testCrashFreedom(t, v, n)
		})
	}
}

func crashRequests(version string) int {
	if s := os.Getenv("URANUS_CRASH_REQUESTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			panic("URANUS_CRASH_REQUESTS must be a positive number, not " + s)
		}
		return n
	}
	if testing.Short() {
		return 2000
	}
	if version == "1.16.15" || version == newest() {
		return 100000
	}
	return 5000
}

// crashRoute is the route of request i: mostly /work/, every 8th /call/,
// which calls the server back from half-way down its recursion.
func crashRoute(i int) string {
	if i%8 == 7 {
		return "/call/"
	}
	return "/work/"
}

func testCrashFreedom(t *testing.T, version string, n int) {
	bin := stackgrow(t, version)
	wantSpans := 0
	for i := 0; i < n; i++ {
		wantSpans += spansPer(crashRoute(i))
	}

	// Without uranus: the reference answers. Keep-alive connections make
	// this run cheaper; the answers do not depend on the connection.
	start := time.Now()
	plain := startApp(t, bin)
	want, err := drive(plain.addr, n, true)
	if err != nil {
		t.Fatalf("without uranus: %v\n%s", err, plain.errOut())
	}
	wantOut, wantErr := plain.stop(t)
	t.Logf("without uranus: %d requests in %v", n, time.Since(start).Round(time.Millisecond))

	// With uranus: a new connection per request, so that each is served by
	// a new goroutine whose stack starts small and must grow.
	start = time.Now()
	traced := startApp(t, bin)
	s := startSession(t, sessionOptions{})
	tg := s.attach(traced.pid())
	got, err := drive(traced.addr, n, false)
	if err != nil {
		t.Fatalf("with uranus: %v\ntarget stderr:\n%s", err, traced.errOut())
	}
	elapsed := time.Since(start)
	s.waitSpans(wantSpans)
	// Read the counts before /stats, whose request is a span too.
	counters, spans := tg.Counters(), s.Spans.total()
	stats := mustFetch(t, "http://"+traced.addr+"/stats")
	gotOut, gotErr := traced.stop(t)
	t.Logf("with uranus: %d requests in %v (%.0f/s); target: %s", n, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), strings.TrimSpace(stats))

	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d (%s%d): body %q with uranus, %q without", i, crashRoute(i), i, got[i], want[i])
			break
		}
	}
	if norm(gotOut) != norm(wantOut) || gotErr != wantErr {
		t.Errorf("the target printed something else with uranus attached:\nwith:\n%s%s\nwithout:\n%s%s", gotOut, gotErr, wantOut, wantErr)
	}

	// Requests grew their stacks and goroutines changed threads, or the test
	// proves less than it claims. Since Go 1.19 a goroutine may start with
	// a stack the size of the average one scanned, so now and then one
	// starts large enough: nearly all, not all, must grow.
	var served, moved, migrated int
	fmt.Sscanf(stats, "served %d moved %d migrated %d", &served, &moved, &migrated)
	if moved < served*99/100 {
		t.Errorf("only %d of %d requests grew their stack", moved, served)
	}
	if migrated == 0 {
		t.Errorf("no request changed threads (served %d)", served)
	}

	if spans != wantSpans {
		t.Errorf("%d spans for %d requests, want %d", spans, n, wantSpans)
	}
	for _, p := range s.Spans.problems() {
		t.Error(p)
	}
	checkNothingLost(t, s, counters, spans)
}

// norm replaces the listening address, the one line that differs between
// two runs of the same program.
func norm(out string) string {
	return regexp.MustCompile(`(?m)^listening on .*$`).ReplaceAllString(out, "listening on ADDR")
}

// drive sends requests 0..n-1, 8 at a time, and returns the bodies.
func drive(addr string, n int, keepAlive bool) ([]string, error) {
	c := newClient(keepAlive, 8)
	bodies := make([]string, n)
	err := parallel(n, 8, func(i int) error {
		b, err := fetch(c, fmt.Sprintf("http://%s%s%d", addr, crashRoute(i), i))
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		bodies[i] = b
		return nil
	})
	return bodies, err
}

// checkNothingLost asserts that the BPF side handed every call it saw to
// user space, and user space turned every record into a span.
func checkNothingLost(t *testing.T, s *session, byInst map[string]attach.Counters, spans int) {
	t.Helper()
	var events uint64
	for id, c := range byInst {
		if c.RingbufFull+c.InflightFull+c.NoEntry+c.ReadError != 0 {
			t.Errorf("%s lost calls: %+v", id, c)
		}
		if c.Return != c.Events+c.Unsampled {
			t.Errorf("%s: %d returns but %d events (%d unsampled): %+v", id, c.Return, c.Events, c.Unsampled, c)
		}
		events += c.Events
	}
	st := s.Attacher.Stats()
	if st.BadRecords != 0 || st.UnknownSource != 0 {
		t.Errorf("%d undecodable records (%s), %d of unknown source", st.BadRecords, st.LastBad, st.UnknownSource)
	}
	if uint64(spans) != events {
		t.Errorf("%d events became %d spans", events, spans)
	}
	if ps := s.Pipeline.Stats(); ps.Failed != 0 {
		t.Errorf("%d spans failed to export: %s", ps.Failed, ps.LastError)
	}
}

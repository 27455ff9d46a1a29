package reliability

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/uranus-otel/uranus/internal/e2e"
)

// TestHostileRequests sends what any client can: a path that is not UTF-8
// once unescaped, and a long UTF-8 path that the probe's 256-byte buffer
// cuts inside a character. OTLP refuses a whole batch over one invalid
// string, so each must still arrive, with valid UTF-8, along with the
// ordinary requests around it.
func TestHostileRequests(t *testing.T) {
	e2e.RequireBPF(t)
	col := startCollector(t)
	a := startApp(t, stackgrow(t, newest()), "-depth", "2")
	s := startUranus(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.endpoint(), "OTEL_BSP_SCHEDULE_DELAY=100"},
		[]string{"--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag()})
	s.waitLine(t, 0, "msg=attached")
	paths := []string{
		"/work/1",
		"/work/%ff%fe%80",
		"/work/x" + strings.Repeat("%C3%A9", 200), // "é" × 200: 407 bytes, cut at 256 inside one
		"/work/2",
	}
	for _, p := range paths {
		mustFetch(t, "http://"+a.addr+p)
	}
	got := col.waitSpans(t, len(paths)*spansPer("/work/"))
	for _, sp := range got {
		if !utf8.ValidString(sp.path) {
			t.Errorf("url.path %q is not valid UTF-8", sp.path)
		}
	}
	if err := s.signal(t, os.Interrupt); err != nil {
		t.Fatal(err)
	}
	final, _ := s.waitLine(t, 0, "final counters")
	if failed := logInt(t, final, "spans_failed"); failed != 0 {
		t.Errorf("%d spans failed to export: %s", failed, s.log())
	}
}

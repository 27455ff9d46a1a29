package reliability

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

// TestRingBufferOverflow overloads the real uranus binary on purpose: a
// one-page ring buffer and a collector that does not answer, so the batch
// queue fills, reading stops, and the BPF programs find the ring buffer
// full. Every request must then be either a span that reaches the
// collector or an event counted as lost, in the log, on the Prometheus
// endpoint and in the OTLP self-metrics.
func TestRingBufferOverflow(t *testing.T) {
	e2e.RequireBPF(t)
	const n = 6000 // more than the 4096-span queue and one 512-span batch
	col := startCollector(t)
	col.hang()
	a := startApp(t, stackgrow(t, newest()), "-depth", "2")
	s := startUranus(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.endpoint(),
		"OTEL_METRICS_EXPORTER=otlp",
		"OTEL_METRIC_EXPORT_INTERVAL=500",
	}, []string{"--pid", strconv.Itoa(a.pid()), "--instrument", instrumentFlag(),
		"--ring-buffer", "4096", "--metrics-addr", "127.0.0.1:0", "--stats-interval", "1s"})
	s.waitLine(t, 0, "msg=attached")
	line, _ := s.waitLine(t, 0, "serving self-metrics")
	metricsURL := logField(line, "url")

	c := newClient(true, 16)
	if err := parallel(n, 16, func(i int) error {
		_, err := fetch(c, fmt.Sprintf("http://%s/work/%d", a.addr, i))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wantSpans := uint64(n * spansPer("/work/"))

	// While the collector hangs, the loss shows on the endpoint.
	var scraped map[string]uint64
	deadline := time.Now().Add(time.Minute)
	for {
		scraped = scrape(t, metricsURL)
		got := scraped[`uranus_events_total`] + scraped[`uranus_events_lost_total{reason="ring_buffer_full"}`]
		if got == wantSpans {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint accounts for %d of %d calls:\n%v", got, wantSpans, scraped)
		}
		time.Sleep(100 * time.Millisecond)
	}
	lost := scraped[`uranus_events_lost_total{reason="ring_buffer_full"}`]
	if lost == 0 {
		t.Fatalf("nothing was lost: the test did not overload uranus (%v)", scraped)
	}
	s.waitLine(t, 0, "events lost: the ring buffer was full")

	col.release()
	col.waitSpans(t, int(wantSpans-lost))
	if err := s.signal(t, os.Interrupt); err != nil {
		t.Fatalf("uranus exited with %v", err)
	}
	final, _ := s.waitLine(t, 0, "final counters")
	events, lostFinal := logInt(t, final, "events"), logInt(t, final, "events_lost")
	exported, failed := logInt(t, final, "spans_exported"), logInt(t, final, "spans_failed")
	t.Logf("%d requests: %d spans reached the collector, %d events lost; %s", n, col.count(), lostFinal, final[strings.Index(final, "probe_hits"):])
	if lostFinal != lost || events+lost != wantSpans || exported != events || failed != 0 || uint64(col.count()) != exported {
		t.Errorf("spans (%d exported, %d received, %d failed) + lost (%d; %d scraped) do not add up to %d", exported, col.count(), failed, lostFinal, lost, wantSpans)
	}
	for _, m := range []struct {
		name, key, value string
		want             uint64
	}{
		{"uranus.events.lost", "reason", "ring_buffer_full", lost},
		{"uranus.events", "", "", events},
		{"uranus.spans.exported", "", "", exported},
		{"uranus.probe.hits", "site", "return", wantSpans},
	} {
		got, ok := col.metricValue(m.name, m.key, m.value)
		if !ok || uint64(got) != m.want {
			t.Errorf("OTLP self-metric %s{%s=%s} = %d (received: %v), want %d", m.name, m.key, m.value, got, ok, m.want)
		}
	}
}

// scrape reads a Prometheus text endpoint into name{labels} → value.
func scrape(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	body, err := fetch(http.DefaultClient, url)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	sample := regexp.MustCompile(`^(\S+) (\d+)$`)
	for _, line := range strings.Split(body, "\n") {
		if m := sample.FindStringSubmatch(line); m != nil {
			out[m[1]], _ = strconv.ParseUint(m[2], 10, 64)
		}
	}
	return out
}

// TestInflightMapOverflow holds more requests in flight than the
// http-server program's in-flight map has entries (an LRU of 10240): the
// map evicts instead of growing, and every call whose entry was evicted is
// counted when it returns, so that spans plus counted losses still equal
// the calls. It uses the httpserver sample's /sleep/ route and is specific
// to the http-server instrumentor.
func TestInflightMapOverflow(t *testing.T) {
	e2e.RequireBPF(t)
	n := 11000
	if testing.Short() {
		t.Skip("skipping under -short: holds 11,000 connections open")
	}
	a := startApp(t, e2e.BuildTarget(t, "httpserver", newest(), testapp.Options{}))
	s := startSession(t, sessionOptions{RingBufferBytes: 64 << 20, Instrumentors: []*instrumentors.Instrumentor{httpserver.Instrumentor}})
	tg := s.attach(a.pid())

	c := newClient(false, 0)
	start := time.Now()
	if err := parallel(n, n, func(i int) error {
		_, err := fetch(c, "http://"+a.addr+"/sleep/6000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d concurrent 6 s requests took %v", n, time.Since(start).Round(time.Millisecond))
	ctr := tg.Counters()[httpserver.Instrumentor.ID]
	deadline := time.Now().Add(time.Minute)
	for s.Spans.total() < int(ctr.Events) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("counters: %+v; spans %d", ctr, s.Spans.total())
	if ctr.Return != uint64(n) {
		t.Errorf("%d RET hits for %d requests", ctr.Return, n)
	}
	if ctr.Events+ctr.NoEntry+ctr.RingbufFull != ctr.Return {
		t.Errorf("%d events + %d unmatched returns + %d ring-buffer losses != %d returns", ctr.Events, ctr.NoEntry, ctr.RingbufFull, ctr.Return)
	}
	if ctr.NoEntry == 0 {
		t.Errorf("no entry was evicted: the in-flight map did not overflow (or is not bounded)")
	}
	if got := s.Spans.total(); uint64(got) != ctr.Events {
		t.Errorf("%d events became %d spans", ctr.Events, got)
	}
}

// Package selfmetrics exposes uranus's own counters — what it attached, what
// its probes saw, what it lost and where, what it exported — so that losses
// reach monitoring instead of only the log: as Prometheus text on an HTTP
// endpoint (--metrics-addr) and as OTLP metrics (OTEL_METRICS_EXPORTER=otlp).
//
// Both read the same Snapshot, taken from attach.Attacher.Stats and
// otel.Pipeline.Stats when scraped or collected; nothing is counted twice.
package selfmetrics

import (
	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/otel"
)

// Snapshot is one reading of every counter.
type Snapshot struct {
	Targets    int // processes attached now
	ProbeSites int // uprobes attached now

	EntryHits  uint64 // probe hits at function entries
	ReturnHits uint64 // probe hits at RET instructions
	Events     uint64 // records the BPF programs handed to user space
	Unsampled  uint64 // spans the sampler dropped in the kernel, by design

	RingBufferFull uint64 // records lost: the ring buffer was full
	NoEntry        uint64 // returns whose entry was not recorded (attached mid-call, or evicted from the in-flight map)
	InflightFull   uint64 // entries not recorded: the in-flight map refused them
	ReadErrors     uint64 // failed reads of target memory (the span lacks a field)

	Undecodable   uint64 // records an instrumentor could not decode
	UnknownSource uint64 // records that arrived after their target was detached
	EventsDropped uint64 // span events whose span never ended in time, or over the per-span cap

	SpansExported uint64 // spans the exporters delivered
	SpansFailed   uint64 // spans the exporters reported as not delivered
}

// Source takes a Snapshot.
type Source func() Snapshot

// FromUranus reads the counters of a running uranus.
func FromUranus(att *attach.Attacher, p *otel.Pipeline) Source {
	return func() Snapshot {
		a, e := att.Stats(), p.Stats()
		return Snapshot{
			Targets:        a.Targets,
			ProbeSites:     a.ProbeSites,
			EntryHits:      a.Probes.Entry,
			ReturnHits:     a.Probes.Return,
			Events:         a.Probes.Events,
			Unsampled:      a.Probes.Unsampled,
			RingBufferFull: a.Probes.RingbufFull,
			NoEntry:        a.Probes.NoEntry,
			InflightFull:   a.Probes.InflightFull,
			ReadErrors:     a.Probes.ReadError,
			Undecodable:    a.BadRecords,
			UnknownSource:  a.UnknownSource,
			EventsDropped:  a.EventsDropped,
			SpansExported:  e.Exported,
			SpansFailed:    e.Failed,
		}
	}
}

// metric describes one exported metric, for both exporters.
type metric struct {
	otelName string // dotted OTel name
	promName string // Prometheus name (counters end in _total)
	unit     string // UCUM, for OTLP
	help     string
	counter  bool // monotonic; otherwise a gauge
	points   func(Snapshot) []point
}

// point is one value of a metric, with its attribute (at most one).
type point struct {
	key, value string // attribute; empty for none
	n          uint64
}

func one(f func(Snapshot) uint64) func(Snapshot) []point {
	return func(s Snapshot) []point { return []point{{n: f(s)}} }
}

var metrics = []metric{
	{"uranus.targets", "uranus_targets", "{process}", "Target processes attached now.", false,
		one(func(s Snapshot) uint64 { return uint64(s.Targets) })},
	{"uranus.probe.sites", "uranus_probe_sites", "{uprobe}", "Uprobes attached now: function entries and RET instructions.", false,
		one(func(s Snapshot) uint64 { return uint64(s.ProbeSites) })},
	{"uranus.probe.hits", "uranus_probe_hits_total", "{hit}", "Probe hits, by where the probe sits.", true,
		func(s Snapshot) []point {
			return []point{{"site", "entry", s.EntryHits}, {"site", "return", s.ReturnHits}}
		}},
	{"uranus.events", "uranus_events_total", "{event}", "Records the BPF programs handed to user space.", true,
		one(func(s Snapshot) uint64 { return s.Events })},
	{"uranus.spans.unsampled", "uranus_spans_unsampled_total", "{span}", "Spans the sampler dropped in the kernel, by design.", true,
		one(func(s Snapshot) uint64 { return s.Unsampled })},
	{"uranus.events.lost", "uranus_events_lost_total", "{event}", "Calls seen by a probe that never became a span, by reason.", true,
		func(s Snapshot) []point {
			return []point{
				{"reason", "ring_buffer_full", s.RingBufferFull},
				{"reason", "no_entry", s.NoEntry},
				{"reason", "inflight_map_full", s.InflightFull},
			}
		}},
	{"uranus.read.errors", "uranus_read_errors_total", "{read}", "Failed reads of target memory; the span lacks the field.", true,
		one(func(s Snapshot) uint64 { return s.ReadErrors })},
	{"uranus.records.dropped", "uranus_records_dropped_total", "{record}", "Records user space could not turn into spans, by reason.", true,
		func(s Snapshot) []point {
			return []point{{"reason", "undecodable", s.Undecodable}, {"reason", "unknown_source", s.UnknownSource}, {"reason", "span_event_orphaned", s.EventsDropped}}
		}},
	{"uranus.spans.exported", "uranus_spans_exported_total", "{span}", "Spans the exporters delivered.", true,
		one(func(s Snapshot) uint64 { return s.SpansExported })},
	{"uranus.spans.failed", "uranus_spans_failed_total", "{span}", "Spans the exporters could not deliver (dropped after the exporter's retries).", true,
		one(func(s Snapshot) uint64 { return s.SpansFailed })},
}

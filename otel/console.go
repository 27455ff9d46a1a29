package otel

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Console is a span exporter that draws each trace as a tree with a
// waterfall bar per span. Spans of one trace arrive separately (children
// end first, other processes later), so a trace is drawn once no span of it
// has arrived for the linger time.
type Console struct {
	w      io.Writer
	linger time.Duration

	mu      sync.Mutex
	pending map[trace.TraceID]*pendingTrace
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type pendingTrace struct {
	spans []sdktrace.ReadOnlySpan
	last  time.Time
}

// NewConsole returns a console exporter writing to w.
func NewConsole(w io.Writer, linger time.Duration) *Console {
	if linger <= 0 {
		linger = time.Second
	}
	c := &Console{
		w: w, linger: linger,
		pending: map[trace.TraceID]*pendingTrace{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.loop()
	return c
}

// ExportSpans implements sdktrace.SpanExporter.
func (c *Console) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, s := range spans {
		id := s.SpanContext().TraceID()
		p := c.pending[id]
		if p == nil {
			p = &pendingTrace{}
			c.pending[id] = p
		}
		p.spans = append(p.spans, s)
		p.last = now
	}
	return nil
}

// Shutdown draws every pending trace and stops.
func (c *Console) Shutdown(context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.done
	c.flush(time.Time{})
	return nil
}

func (c *Console) loop() {
	defer close(c.done)
	t := time.NewTicker(c.linger / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.flush(now.Add(-c.linger))
		}
	}
}

// flush draws the traces whose last span arrived before cutoff (all of them
// for a zero cutoff), oldest first.
func (c *Console) flush(cutoff time.Time) {
	c.mu.Lock()
	var ready [][]sdktrace.ReadOnlySpan
	for id, p := range c.pending {
		if cutoff.IsZero() || p.last.Before(cutoff) {
			ready = append(ready, p.spans)
			delete(c.pending, id)
		}
	}
	c.mu.Unlock()
	sort.Slice(ready, func(i, j int) bool { return earliest(ready[i]).Before(earliest(ready[j])) })
	for _, spans := range ready {
		io.WriteString(c.w, RenderTrace(spans))
	}
}

func earliest(spans []sdktrace.ReadOnlySpan) time.Time {
	var t time.Time
	for _, s := range spans {
		if t.IsZero() || s.StartTime().Before(t) {
			t = s.StartTime()
		}
	}
	return t
}

const barWidth = 32

// RenderTrace draws the spans of one trace: a header line, then one line per
// span, children under their parent in start order, each with its kind,
// service, status, duration and a bar placing it within the trace.
func RenderTrace(spans []sdktrace.ReadOnlySpan) string {
	if len(spans) == 0 {
		return ""
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	start, end := spans[0].StartTime(), spans[0].EndTime()
	for _, s := range spans {
		if _, ok := byID[s.Parent().SpanID()]; ok && s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
		if s.StartTime().Before(start) {
			start = s.StartTime()
		}
		if s.EndTime().After(end) {
			end = s.EndTime()
		}
	}
	byStart := func(l []sdktrace.ReadOnlySpan) {
		sort.SliceStable(l, func(i, j int) bool { return l[i].StartTime().Before(l[j].StartTime()) })
	}
	byStart(roots)

	type row struct {
		prefix string
		span   sdktrace.ReadOnlySpan
	}
	var rows []row
	var walk func(s sdktrace.ReadOnlySpan, prefix, childPrefix string)
	walk = func(s sdktrace.ReadOnlySpan, prefix, childPrefix string) {
		rows = append(rows, row{prefix, s})
		kids := children[s.SpanContext().SpanID()]
		byStart(kids)
		for i, k := range kids {
			if i == len(kids)-1 {
				walk(k, childPrefix+"└─ ", childPrefix+"   ")
			} else {
				walk(k, childPrefix+"├─ ", childPrefix+"│  ")
			}
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}

	nameWidth := 0
	for _, r := range rows {
		if n := utf8.RuneCountInString(r.prefix + r.span.Name()); n > nameWidth {
			nameWidth = n
		}
	}
	if nameWidth > 56 {
		nameWidth = 56
	}
	total := end.Sub(start)
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s  %d span%s  %s\n", spans[0].SpanContext().TraceID(), len(spans), plural(len(spans)), formatDuration(total))
	for _, r := range rows {
		s := r.span
		name := truncate(r.prefix+s.Name(), nameWidth)
		fmt.Fprintf(&b, "  %s%s  %-8s %-14s %-5s %9s  %s%s\n",
			name, strings.Repeat(" ", nameWidth-utf8.RuneCountInString(name)),
			kindName(s.SpanKind()), truncate(serviceName(s), 14), statusText(s),
			formatDuration(s.EndTime().Sub(s.StartTime())),
			bar(s.StartTime().Sub(start), s.EndTime().Sub(start), total), detail(s))
	}
	b.WriteString("\n")
	return b.String()
}

func bar(from, to, total time.Duration) string {
	cells := make([]rune, barWidth)
	for i := range cells {
		cells[i] = '·'
	}
	if total <= 0 {
		total = 1
	}
	a := int(int64(from) * barWidth / int64(total))
	z := int((int64(to)*barWidth + int64(total) - 1) / int64(total))
	if a >= barWidth {
		a = barWidth - 1
	}
	if z <= a {
		z = a + 1
	}
	if z > barWidth {
		z = barWidth
	}
	for i := a; i < z; i++ {
		cells[i] = '█'
	}
	return "|" + string(cells) + "|"
}

func kindName(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindServer:
		return "server"
	case trace.SpanKindClient:
		return "client"
	case trace.SpanKindProducer:
		return "producer"
	case trace.SpanKindConsumer:
		return "consumer"
	}
	return "internal"
}

func serviceName(s sdktrace.ReadOnlySpan) string {
	if r := s.Resource(); r != nil {
		if v, ok := r.Set().Value(semconv.ServiceNameKey); ok {
			return v.AsString()
		}
	}
	return ""
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func statusText(s sdktrace.ReadOnlySpan) string {
	if v, ok := attr(s, semconv.HTTPResponseStatusCodeKey); ok {
		return fmt.Sprint(v.AsInt64())
	}
	if s.Status().Code == codes.Error {
		return "ERROR"
	}
	return "ok"
}

// detail is the one thing worth reading after the bar: the full URL or
// path, the peer, or the error.
func detail(s sdktrace.ReadOnlySpan) string {
	var parts []string
	for _, k := range []attribute.Key{semconv.URLFullKey, semconv.URLPathKey} {
		if v, ok := attr(s, k); ok {
			parts = append(parts, v.AsString())
			break
		}
	}
	if v, ok := attr(s, semconv.ClientAddressKey); ok {
		parts = append(parts, "from "+v.AsString())
	}
	if s.Status().Code == codes.Error && s.Status().Description != "" {
		parts = append(parts, "error: "+s.Status().Description)
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, "  ")
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

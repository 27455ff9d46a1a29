package attach

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/otel"
)

// pendingEvents holds events recorded inside a span that has not ended yet
// (a TLS read in a request, say): the span's record comes at its RET, after
// theirs, and takes them along. Bounded: events for spans that never come
// (unsampled, or lost) expire, and both overflow and expiry are counted.
type pendingEvents struct {
	mu      sync.Mutex
	bySpan  map[trace.SpanID]*pending
	dropped uint64 // events that found no span, or no room
}

type pending struct {
	events  []otel.Event
	expires time.Time
}

const (
	maxPendingSpans     = 4096
	maxEventsPerSpan    = 128
	pendingEventsExpiry = 30 * time.Second
)

func (p *pendingEvents) add(id trace.SpanID, events []otel.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySpan == nil {
		p.bySpan = map[trace.SpanID]*pending{}
	}
	now := time.Now()
	e := p.bySpan[id]
	if e == nil {
		if len(p.bySpan) >= maxPendingSpans {
			p.expire(now)
		}
		if len(p.bySpan) >= maxPendingSpans {
			p.dropped += uint64(len(events))
			return
		}
		e = &pending{expires: now.Add(pendingEventsExpiry)}
		p.bySpan[id] = e
	}
	room := maxEventsPerSpan - len(e.events)
	if room < len(events) {
		p.dropped += uint64(len(events) - max(room, 0))
		events = events[:max(room, 0)]
	}
	e.events = append(e.events, events...)
}

// take removes and returns the events waiting for span id.
func (p *pendingEvents) take(id trace.SpanID) []otel.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.bySpan[id]
	if e == nil {
		return nil
	}
	delete(p.bySpan, id)
	return e.events
}

func (p *pendingEvents) expire(now time.Time) {
	for id, e := range p.bySpan {
		if now.After(e.expires) {
			p.dropped += uint64(len(e.events))
			delete(p.bySpan, id)
		}
	}
}

// droppedCount returns how many events were dropped, expiring stale ones.
func (p *pendingEvents) droppedCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(time.Now())
	return p.dropped
}

// pendingCount returns how many events are still waiting for their span.
func (p *pendingEvents) pendingCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n uint64
	for _, e := range p.bySpan {
		n += uint64(len(e.events))
	}
	return n
}

package reliability

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP receiver the test can take down, bring back on
// the same port, or make hang. It keeps a short record of each span.
type collector struct {
	t    testing.TB
	addr string

	mu      sync.Mutex
	srv     *http.Server
	gate    chan struct{} // when set, exports wait until it is closed
	spans   []gotSpan
	metrics []*metricspb.ResourceMetrics
	posts   int // export requests received, answered or not
}

// gotSpan is what the tests look at in a received span.
type gotSpan struct {
	pid, goVersion, path string
	received             time.Time
}

func startCollector(t testing.TB) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{t: t, addr: ln.Addr().String()}
	c.serve(ln)
	t.Cleanup(func() {
		c.release()
		c.down()
	})
	return c
}

func (c *collector) endpoint() string { return "http://" + c.addr }

func (c *collector) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(c.handle)}
	c.mu.Lock()
	c.srv = srv
	c.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the listener and every connection: exports are refused.
func (c *collector) down() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again on the same address.
func (c *collector) up() {
	c.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", c.addr); err == nil {
			c.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("listening on %s again: %v", c.addr, err)
}

// hang makes every trace export wait, unanswered, until release (metrics
// still go through).
func (c *collector) hang() {
	c.mu.Lock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *collector) release() {
	c.mu.Lock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
	c.mu.Unlock()
}

func (c *collector) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.posts++
	gate := c.gate
	c.mu.Unlock()
	if gate != nil && r.URL.Path == "/v1/traces" {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.addSpans(&req)
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var req colmetricspb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.metrics = append(c.metrics, req.ResourceMetrics...)
		c.mu.Unlock()
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	b, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}

func (c *collector) addSpans(req *coltracepb.ExportTraceServiceRequest) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, gotSpan{
					pid:       res["process.pid"],
					goVersion: res["process.runtime.version"],
					path:      attrMap(s.Attributes)["url.path"],
					received:  now,
				})
			}
		}
	}
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = fmt.Sprint(v.IntValue)
		default:
			m[kv.Key] = fmt.Sprint(kv.Value.GetValue())
		}
	}
	return m
}

func (c *collector) got() []gotSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gotSpan(nil), c.spans...)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spans)
}

// waitSpans waits until the collector holds at least n spans. The bound
// only guards against a hung test.
func (c *collector) waitSpans(t testing.TB, n int) []gotSpan {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for c.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the collector received %d spans, want %d", c.count(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c.got()
}

// waitSpan waits for a span that satisfies match.
func (c *collector) waitSpan(t testing.TB, what string, match func(gotSpan) bool) gotSpan {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		for _, sp := range c.got() {
			if match(sp) {
				return sp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector received no span %s (got %d spans)", what, c.count())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricValue is the last value the collector received for the metric
// name with attribute key=value ("" for none).
func (c *collector) metricValue(name, key, value string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v int64
	found := false
	for _, rm := range c.metrics {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != name {
					continue
				}
				var points []*metricspb.NumberDataPoint
				if s := m.GetSum(); s != nil {
					points = s.DataPoints
				} else if g := m.GetGauge(); g != nil {
					points = g.DataPoints
				}
				for _, p := range points {
					if key == "" && len(p.Attributes) == 0 || key != "" && attrMap(p.Attributes)[key] == value {
						v, found = p.GetAsInt(), true
					}
				}
			}
		}
	}
	return v, found
}

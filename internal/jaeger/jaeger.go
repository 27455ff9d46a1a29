// Package jaeger builds and runs a real Jaeger v2 for the tests that check
// uranus's spans end to end: OTLP in, Jaeger's query API out.
//
// The binary comes from deploy/jaeger/build.sh, which builds it from
// Jaeger's Go module and caches it under $(go env GOMODCACHE)/cache/uranus-jaeger;
// the configuration is deploy/jaeger/config.yaml, with every listener on
// 127.0.0.1 and on free ports.
package jaeger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoDir is the repository root, found from this file's location: the
// build script and the configuration live there.
func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ConfigPath is the Jaeger configuration the tests and the image use.
func ConfigPath() string { return filepath.Join(repoDir(), "deploy", "jaeger", "config.yaml") }

var (
	buildMu  sync.Mutex
	builtBin string
)

// Build returns the path of a static Jaeger binary, building it the first
// time (several minutes; progress goes to logf).
func Build(logf func(string, ...any)) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtBin != "" {
		return builtBin, nil
	}
	script := filepath.Join(repoDir(), "deploy", "jaeger", "build.sh")
	cmd := exec.Command("bash", script)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &lineLogger{logf: logf}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v", script, err)
	}
	path := strings.TrimSpace(out.String())
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s printed %q, which is not a file: %v", script, path, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		logf("jaeger: built in %s", d.Round(time.Second))
	}
	builtBin = path
	return path, nil
}

// lineLogger hands each line written to it to logf.
type lineLogger struct {
	logf func(string, ...any)
	buf  []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.logf("%s", l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// Instance is a running Jaeger.
type Instance struct {
	OTLPHTTP string // OTLP/HTTP endpoint, "http://127.0.0.1:PORT"
	OTLPGRPC string // OTLP/gRPC endpoint, "http://127.0.0.1:PORT"
	Query    string // query API base URL, "http://127.0.0.1:PORT"
	cmd      *exec.Cmd
	mu       sync.Mutex
	log      bytes.Buffer
}

// Log is what Jaeger printed so far.
func (in *Instance) Log() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log.String()
}

type lockedBuffer struct{ in *Instance }

func (w lockedBuffer) Write(b []byte) (int, error) {
	w.in.mu.Lock()
	defer w.in.mu.Unlock()
	return w.in.log.Write(b)
}

// Start builds Jaeger if needed, runs it on free 127.0.0.1 ports and waits
// until it is healthy. It is stopped when the test ends.
func Start(t testing.TB) *Instance {
	t.Helper()
	bin, err := Build(t.Logf)
	if err != nil {
		t.Fatalf("building Jaeger: %v", err)
	}
	ports, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	in := &Instance{
		OTLPGRPC: "http://127.0.0.1:" + ports[0],
		OTLPHTTP: "http://127.0.0.1:" + ports[1],
		Query:    "http://127.0.0.1:" + ports[2],
	}
	health := "http://127.0.0.1:" + ports[4] + "/status"
	in.cmd = exec.Command(bin, "--config", ConfigPath())
	in.cmd.Env = append(os.Environ(),
		"JAEGER_LISTEN_HOST=127.0.0.1",
		"JAEGER_OTLP_GRPC_PORT="+ports[0],
		"JAEGER_OTLP_HTTP_PORT="+ports[1],
		"JAEGER_QUERY_PORT="+ports[2],
		"JAEGER_QUERY_GRPC_PORT="+ports[3],
		"JAEGER_HEALTH_PORT="+ports[4],
		// Jaeger is itself instrumented with the OTel SDK: keep the
		// test's OTLP settings from reaching it.
		"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
	)
	in.cmd.Stdout, in.cmd.Stderr = lockedBuffer{in}, lockedBuffer{in}
	if err := in.cmd.Start(); err != nil {
		t.Fatalf("starting Jaeger: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- in.cmd.Wait() }()
	t.Cleanup(func() {
		in.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			in.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("Jaeger's log:\n%s", in.Log())
		}
	})
	// Generous: only guards against a Jaeger that never comes up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("Jaeger exited at start (%v):\n%s", err, in.Log())
		default:
		}
		if resp, err := http.Get(health); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err := in.Services(); err == nil {
					return in
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger not healthy after 60s:\n%s", in.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(n int) ([]string, error) {
	var ports []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// Trace is one trace as Jaeger's query API (/api/traces) returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

// Reference links a span to another ("CHILD_OF" its parent).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag. Value is a string, a number (float64) or a bool.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Process is the resource of the spans that name it.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns a tag's value formatted with %v, and whether it is there.
func Tag(tags []KeyValue, key string) (string, bool) {
	for _, kv := range tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value), true
		}
	}
	return "", false
}

// Parent returns the span ID s is a child of, "" for a root span.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Services lists the service names Jaeger has spans of.
func (in *Instance) Services() ([]string, error) {
	return Services(in.Query)
}

// Traces returns up to limit recent traces with spans of service.
func (in *Instance) Traces(service string, limit int) ([]Trace, error) {
	return Traces(in.Query, service, limit)
}

// Services asks the query API at base which services it has spans of.
func Services(base string) ([]string, error) {
	var out struct {
		Data []string `json:"data"`
	}
	err := getJSON(base+"/api/services", &out)
	return out.Data, err
}

// Traces asks the query API at base for up to limit recent traces with
// spans of service.
func Traces(base, service string, limit int) ([]Trace, error) {
	var out struct {
		Data   []Trace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	q := url.Values{"service": {service}, "limit": {strconv.Itoa(limit)}, "lookback": {"1h"}}
	if err := getJSON(base+"/api/traces?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("query API: %s", out.Errors[0].Msg)
	}
	return out.Data, nil
}

func getJSON(u string, v any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %v", u, err)
	}
	return nil
}

// WaitTraces polls the query API at base until ok accepts the traces of
// service, returning them; the wait is bounded generously, as a guard
// against a hung test, not a timing assumption.
func WaitTraces(base, service string, ok func([]Trace) bool) ([]Trace, error) {
	deadline := time.Now().Add(60 * time.Second)
	var last []Trace
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = Traces(base, service, 100)
		if lastErr == nil && ok(last) {
			return last, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	if lastErr != nil {
		return last, lastErr
	}
	return last, errors.New("the traces Jaeger returned never satisfied the test within 60s")
}

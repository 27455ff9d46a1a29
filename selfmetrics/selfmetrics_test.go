package selfmetrics

import (
	"io"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// distinct gives every field of a Snapshot its own value, 1001, 1002, …
func distinct() Snapshot {
	var s Snapshot
	v := reflect.ValueOf(&s).Elem()
	for i := 0; i < v.NumField(); i++ {
		switch f := v.Field(i); f.Kind() {
		case reflect.Int:
			f.SetInt(int64(1001 + i))
		case reflect.Uint64:
			f.SetUint(uint64(1001 + i))
		}
	}
	return s
}

func TestTextHasEveryCounter(t *testing.T) {
	var b strings.Builder
	WriteText(&b, distinct())
	text := b.String()
	v := reflect.ValueOf(distinct())
	for i := 0; i < v.NumField(); i++ {
		want := " " + strconv.Itoa(1001+i) + "\n"
		if !strings.Contains(text, want) {
			t.Errorf("Snapshot.%s (%d) is not exported:\n%s", v.Type().Field(i).Name, 1001+i, text)
		}
	}
}

// TestTextFormat checks the exposition format line by line: HELP and TYPE
// before each family, counters named *_total, label values quoted.
func TestTextFormat(t *testing.T) {
	var b strings.Builder
	WriteText(&b, Snapshot{RingBufferFull: 7, SpansExported: 3})
	sample := regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="[a-z_]+"\})? [0-9]+$`)
	kinds := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			kinds[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("malformed line %q", line)
			continue
		}
		kind, ok := kinds[m[1]]
		if !ok {
			t.Errorf("%s has no TYPE line before its samples", m[1])
		}
		if (kind == "counter") != strings.HasSuffix(m[1], "_total") {
			t.Errorf("%s is a %s", m[1], kind)
		}
	}
	for _, want := range []string{
		`uranus_events_lost_total{reason="ring_buffer_full"} 7`,
		"uranus_spans_exported_total 3",
		"# TYPE uranus_targets gauge",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}

func TestHandler(t *testing.T) {
	h := Handler(func() Snapshot { return Snapshot{Targets: 2} })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(body), "uranus_targets 2\n") {
		t.Errorf("GET /metrics: %d\n%s", rec.Code, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 404 {
		t.Errorf("GET /: %d", rec.Code)
	}
}

func TestExportersFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  string
		want string
		err  string
	}{
		{"", "", ""},
		{"none", "", ""},
		{"otlp", "otlp", ""},
		{"otlp, prometheus", "otlp prometheus", ""},
		{"console", "", `unknown exporter "console"`},
	} {
		t.Setenv("OTEL_METRICS_EXPORTER", c.env)
		got, err := exportersFromEnv()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.env, err, c.err)
			}
			continue
		}
		var names []string
		for _, n := range []string{"otlp", "prometheus"} {
			if got[n] {
				names = append(names, n)
			}
		}
		if strings.Join(names, " ") != c.want || err != nil {
			t.Errorf("%q: %v, %v; want %q", c.env, names, err, c.want)
		}
	}
}

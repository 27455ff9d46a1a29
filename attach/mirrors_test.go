package attach

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/uranus-otel/uranus/internal/csource"
)

// upperSnake spells a Go field name the way enum stat spells it:
// RingbufFull → RINGBUF_FULL.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// statNames names each counter of Counters.fields(), in that order, as
// enum stat should: a named field F is STAT_F, Extra[i] is STAT_EXTRA,
// STAT_EXTRA2, ...
func statNames(t *testing.T) []string {
	var c Counters
	slot := map[*uint64]string{}
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f, name := v.Field(i), upperSnake(v.Type().Field(i).Name)
		switch f.Kind() {
		case reflect.Uint64:
			slot[f.Addr().Interface().(*uint64)] = "STAT_" + name
		case reflect.Array:
			for j := 0; j < f.Len(); j++ {
				n := "STAT_" + name
				if j > 0 {
					n += fmt.Sprint(j + 1)
				}
				slot[f.Index(j).Addr().Interface().(*uint64)] = n
			}
		default:
			t.Fatalf("Counters.%s is a %s: the counters are uint64s", v.Type().Field(i).Name, f.Kind())
		}
	}
	var names []string
	for i, p := range c.fields() {
		n, ok := slot[p]
		if !ok {
			t.Fatalf("Counters.fields()[%d] is not a field of Counters", i)
		}
		delete(slot, p)
		names = append(names, n)
	}
	for _, n := range slot {
		t.Errorf("Counters.fields() leaves out the field for %s (attach/target.go)", n)
	}
	return names
}

// TestCountersMirrorEnumStat: Counters (attach/target.go) reads the stats
// map by index, so its fields must be enum stat (bpf/uranus.h) in order.
func TestCountersMirrorEnumStat(t *testing.T) {
	src, err := csource.BPFFile("uranus.h")
	if err != nil {
		t.Fatal(err)
	}
	enum, err := csource.Enum(src, "stat")
	if err != nil {
		t.Fatalf("bpf/uranus.h: %v", err)
	}
	if last := enum[len(enum)-1]; last.Name != "STAT_COUNT" {
		t.Fatalf("bpf/uranus.h: enum stat ends with %s; the stats map is sized by STAT_COUNT, which must come last", last.Name)
	}
	for _, m := range counterMismatches(statNames(t), enum) {
		t.Error(m)
	}
}

// counterMismatches says where names (Counters, in stats-map order) and
// enum (enum stat) disagree.
func counterMismatches(names []string, enum []csource.Constant) []string {
	var out []string
	count := enum[len(enum)-1]
	enum = enum[:len(enum)-1]
	for i, c := range enum {
		if c.Value != int64(i) {
			out = append(out, fmt.Sprintf("bpf/uranus.h: %s = %d: Counters reads enum stat as indexes 0, 1, 2, ... (want %d)", c.Name, c.Value, i))
		}
	}
	if count.Value != int64(len(names)) {
		out = append(out, fmt.Sprintf("STAT_COUNT is %d in bpf/uranus.h, Counters has %d counters (attach/target.go): add or remove one on the other side", count.Value, len(names)))
	}
	for i := 0; i < max(len(names), len(enum)); i++ {
		var goName, cName string
		if i < len(names) {
			goName = names[i]
		}
		if i < len(enum) {
			cName = enum[i].Name
		}
		if goName != cName {
			out = append(out, fmt.Sprintf("counter %d is %s in bpf/uranus.h (enum stat) but %s in attach/target.go (Counters and its fields())", i, orNone(cName), orNone(goName)))
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "missing"
	}
	return s
}

// TestCounterMismatches: the comparison fails when the two sides differ.
func TestCounterMismatches(t *testing.T) {
	enum := func(names ...string) []csource.Constant {
		var out []csource.Constant
		for i, n := range names {
			out = append(out, csource.Constant{Name: n, Value: int64(i)})
		}
		return out
	}
	for _, c := range []struct {
		names []string
		enum  []csource.Constant
		want  string
	}{
		{[]string{"STAT_A", "STAT_B"}, enum("STAT_A", "STAT_B", "STAT_COUNT"), ""},
		{[]string{"STAT_B", "STAT_A"}, enum("STAT_A", "STAT_B", "STAT_COUNT"), "counter 0 is STAT_A in bpf/uranus.h (enum stat) but STAT_B in attach/target.go"},
		{[]string{"STAT_A"}, enum("STAT_A", "STAT_B", "STAT_COUNT"), "STAT_COUNT is 2 in bpf/uranus.h, Counters has 1"},
		{[]string{"STAT_A"}, []csource.Constant{{Name: "STAT_A", Value: 3}, {Name: "STAT_COUNT", Value: 1}}, "STAT_A = 3"},
	} {
		if got := strings.Join(counterMismatches(c.names, c.enum), "\n"); c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%v against %v: %q, want %q", c.names, c.enum, got, c.want)
		}
	}
}

// TestSpanFlagsMirrorHeader: the flags the reader decodes from each
// record's header are SPAN_FLAG_* of bpf/uranus.h.
func TestSpanFlagsMirrorHeader(t *testing.T) {
	src, err := csource.BPFFile("uranus.h")
	if err != nil {
		t.Fatal(err)
	}
	flags, err := csource.Defines(src, "SPAN_FLAG_")
	if err != nil {
		t.Fatalf("bpf/uranus.h: %v", err)
	}
	mirror := map[string]uint8{"SPAN_FLAG_SAMPLED": flagSampled, "SPAN_FLAG_REMOTE_PARENT": flagRemoteParent}
	for _, f := range flags {
		v, ok := mirror[f.Name]
		switch {
		case !ok:
			t.Errorf("bpf/uranus.h defines %s, which attach/attach.go does not mirror (the flag* constants) nor read", f.Name)
		case int64(v) != f.Value:
			t.Errorf("%s is %#x in bpf/uranus.h but %#x in attach/attach.go", f.Name, f.Value, v)
		}
		delete(mirror, f.Name)
	}
	for n := range mirror {
		t.Errorf("attach/attach.go reads %s, which bpf/uranus.h no longer defines", n)
	}
}

// TestWireCountersMirrorEnum: WireCounters (attach/wire.go) reads the
// wire_stats map by index, so its fields() must be enum wire_stat
// (bpf/wire.c) in order: WIRE_STAT_NOT_HTTP1 is NotHTTP1.
func TestWireCountersMirrorEnum(t *testing.T) {
	src, err := csource.BPFFile("wire.c")
	if err != nil {
		t.Fatal(err)
	}
	enum, err := csource.Enum(src, "wire_stat")
	if err != nil {
		t.Fatalf("bpf/wire.c: %v", err)
	}
	var c WireCounters
	name := map[*uint64]string{}
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		name[v.Field(i).Addr().Interface().(*uint64)] = v.Type().Field(i).Name
	}
	fields := c.fields()
	if len(fields) != v.NumField() {
		t.Errorf("WireCounters.fields() lists %d of its %d counters (attach/wire.go)", len(fields), v.NumField())
	}
	if last := enum[len(enum)-1]; last.Name != "WIRE_STAT_COUNT" || last.Value != int64(len(fields)) {
		t.Fatalf("bpf/wire.c: enum wire_stat ends with %s = %d; want WIRE_STAT_COUNT = %d, the number of WireCounters", last.Name, last.Value, len(fields))
	}
	for i, f := range fields {
		c := enum[i]
		want := strings.ReplaceAll(strings.TrimPrefix(c.Name, "WIRE_STAT_"), "_", "")
		if c.Value != int64(i) || !strings.EqualFold(name[f], want) {
			t.Errorf("counter %d is %s = %d in bpf/wire.c (enum wire_stat) but %s in attach/wire.go (WireCounters.fields())", i, c.Name, c.Value, name[f])
		}
	}
}

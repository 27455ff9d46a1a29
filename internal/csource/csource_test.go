package csource

import (
	"fmt"
	"strings"
	"testing"
)

const sample = `
#define LIMIT 16   // a comment
#define MASK (0x0fU) /* another */
#define ALIAS LIMIT
#define NOT_INT "text"
#define fn(x) ((x) + 1)

enum colour {
	RED,          // 0
	GREEN = 4,
	BLUE,         /* 5 */
	ALSO_RED = RED,
	LAST,
};
enum one { ONLY };
`

func TestEnum(t *testing.T) {
	got, err := Enum(sample, "colour")
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(got); s != "[{RED 0} {GREEN 4} {BLUE 5} {ALSO_RED 0} {LAST 1}]" {
		t.Errorf("enum colour = %s", s)
	}
	if got, err := Enum(sample, "one"); err != nil || len(got) != 1 || got[0] != (Constant{"ONLY", 0}) {
		t.Errorf("enum one = %v, %v", got, err)
	}
	for _, c := range []struct{ src, name, want string }{
		{sample, "col", "no enum col"},
		{"enum e { A = B };", "e", `A: "B" is not an integer literal or an earlier constant`},
		{"enum e { A B };", "e", `"A B" is not an enumerator`},
		{"enum e { A", "e", "no closing brace"},
		{"enum e { };", "e", "empty"},
	} {
		if _, err := Enum(c.src, c.name); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Enum(%q): %v, want an error with %q", c.src, err, c.want)
		}
	}
}

func TestDefines(t *testing.T) {
	for _, c := range []struct {
		name string
		want int64
	}{{"LIMIT", 16}, {"MASK", 15}, {"ALIAS", 16}} {
		if v, err := Define(sample, c.name); err != nil || v != c.want {
			t.Errorf("%s = %d, %v; want %d", c.name, v, err, c.want)
		}
	}
	if _, err := Define(sample, "NOT_INT"); err == nil || !strings.Contains(err.Error(), `"\"text\"" is not an integer`) {
		t.Errorf("a string define: %v", err)
	}
	if _, err := Define(sample, "fn"); err == nil || !strings.Contains(err.Error(), "no #define fn") {
		t.Errorf("a function-like macro: %v", err)
	}
	if got, err := Defines(sample, "L"); err != nil || fmt.Sprint(got) != "[{LIMIT 16}]" {
		t.Errorf("prefix L: %v, %v", got, err)
	}
}

func TestVolatileConsts(t *testing.T) {
	src := `
volatile const u64 off_a;          // a comment
volatile const u8 flag_b = 1;
// volatile const u64 commented_out;
const u64 not_volatile;
volatile const s64 neg = -8;
`
	if got := fmt.Sprint(VolatileConsts(src)); got != "[off_a flag_b neg]" {
		t.Errorf("VolatileConsts = %s", got)
	}
}

func TestBPFFile(t *testing.T) {
	src, err := BPFFile("uranus.h")
	if err != nil || !strings.Contains(src, "enum stat") {
		t.Errorf("uranus.h: %d bytes, %v", len(src), err)
	}
	if _, err := BPFFile("missing.h"); err == nil || !strings.Contains(err.Error(), "bpf/missing.h") {
		t.Errorf("a missing file: %v", err)
	}
}

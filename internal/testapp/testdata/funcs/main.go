// funcs is the target of the function-tracing tests (uranus --func): an HTTP
// server whose handlers call ordinary functions, methods and closures with
// arguments from the query string. For every call it prints, and returns
// in the body, one line
//
//	CALL {"fn":"main.Divide","arg.dividend":"7",…,"result.remainder":"1"}
//
// holding the span attributes uranus should record, formatted the way
// uranus formats them, so a test can compare the two.
//
// It builds with every Go toolchain from 1.13 on: no generics, nothing newer
// than Go 1.13.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Divide is the classic first uprobe experiment.
//
//go:noinline
func Divide(dividend int, divisor int) (quotient int, remainder int) {
	return dividend / divisor, dividend % divisor
}

// parseMe mixes an int, a bool and a float32: at SP+8, SP+16 and SP+20
// under the stack ABI; RAX, RBX and X0 under the register ABI.
//
//go:noinline
func parseMe(a1 int, a2 bool, a3 float32) (int64, int32, string) {
	s := "no"
	if a2 {
		s = "yes"
	}
	return int64(a1) * 3, int32(a3 * 2), s
}

// widths has more integer words than the register ABI's nine registers,
// so j and k are passed on the stack.
//
//go:noinline
func widths(a int8, b int16, c int32, d int64, e uint8, f uint16, g uint32, h uint64, i uintptr, j bool, k int) (int8, uint64) {
	if j {
		return a, h + uint64(k)
	}
	return int8(b) + int8(c) + int8(d) + int8(e) + int8(f) + int8(g) + int8(i), h
}

// Cart's method is traced by its symbol name, main.(*Cart).Add.
type Cart struct {
	Items int
	Total int64
}

//go:noinline
func (c *Cart) Add(name string, price int64, qty uint8) int64 {
	c.Items += int(qty)
	c.Total += price * int64(qty)
	return c.Total
}

// Point is passed by value (two registers) and by pointer.
type Point struct {
	X, Y  int
	Label string
}

//go:noinline
func inspect(b []byte, p *Point, pt Point) (n int, err error) {
	if len(b) == 0 {
		return 0, errors.New("empty")
	}
	return len(b) + p.Y + pt.X, nil
}

//go:noinline
func floats(x float64, y float32) float64 { return x + float64(y) }

// sum4 takes types uranus does not record: an array, which the register
// ABI passes on the stack, and a complex, in X0 and X1; k still comes in
// AX under the register ABI, after them on the stack before it.
//
//go:noinline
func sum4(v [4]int, c complex128, k int) int {
	return v[0] + v[1] + v[2] + v[3] + int(real(c)) + k
}

//go:noinline
func fact(n int) int {
	if n <= 1 {
		return 1
	}
	return n * fact(n-1)
}

// deep recurses through 2 KiB frames, so a new goroutine's stack is copied
// to a bigger one several times while the calls are in flight. The frame
// is used after the recursive call, so the compiler cannot drop it.
//
//go:noinline
func deep(n int, seed uint32) uint32 {
	var frame [2048]byte
	for i := 0; i < len(frame); i += 64 {
		frame[i] = byte(seed) + byte(i)
	}
	if n == 0 {
		return seed
	}
	r := deep(n-1, seed*31+7)
	for i := 0; i < len(frame); i += 64 {
		r += uint32(frame[i])
	}
	return r
}

//go:noinline
func outer(a, b int) int {
	q, r := Divide(a, b)
	return q + r
}

//go:noinline
func risky(n int) int {
	if n < 0 {
		panic("negative")
	}
	return n + 1
}

// guard recovers the panic of risky, so risky's frame ends without a RET.
//
//go:noinline
func guard(n int) (v int) {
	defer func() {
		if recover() != nil {
			v = -1
		}
	}()
	return risky(n)
}

//go:noinline
func describe(r *http.Request, tag string) int { return len(r.URL.Path) + len(tag) }

// tiny is inlined into its callers and has no code of its own.
func tiny(x int) int { return x + 1 }

// scale is main.main.func1: the only closure main creates.
var scale func(int) int

var (
	mu   sync.Mutex
	cart = &Cart{}
)

func num(r *http.Request, k string) int64 {
	v, _ := strconv.ParseInt(r.URL.Query().Get(k), 10, 64)
	return v
}

func unum(r *http.Request, k string) uint64 {
	v, _ := strconv.ParseUint(r.URL.Query().Get(k), 10, 64)
	return v
}

func itoa(v int64) string   { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string  { return strconv.FormatUint(v, 10) }
func btoa(v bool) string    { return strconv.FormatBool(v) }
func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
func ptoa(p unsafe.Pointer) string {
	return fmt.Sprintf("%#x", uintptr(p))
}

// report prints and returns one CALL line: fn, then attribute/value pairs.
func report(w http.ResponseWriter, fn string, kv ...string) {
	m := map[string]string{"fn": fn}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	line := "CALL " + string(b)
	fmt.Println(line)
	fmt.Fprintln(w, line)
}

func divideHandler(w http.ResponseWriter, r *http.Request) {
	a, b := int(num(r, "a")), int(num(r, "b"))
	q, rem := Divide(a, b)
	report(w, "main.Divide", "arg.dividend", itoa(int64(a)), "arg.divisor", itoa(int64(b)),
		"result.quotient", itoa(int64(q)), "result.remainder", itoa(int64(rem)))
}

func parseHandler(w http.ResponseWriter, r *http.Request) {
	a1, a2 := int(num(r, "a1")), r.URL.Query().Get("a2") == "true"
	f, _ := strconv.ParseFloat(r.URL.Query().Get("a3"), 32)
	a3 := float32(f)
	r0, r1, r2 := parseMe(a1, a2, a3)
	report(w, "main.parseMe", "arg.a1", itoa(int64(a1)), "arg.a2", btoa(a2), "arg.a3", ftoa(float64(a3)),
		"result.0", itoa(r0), "result.1", itoa(int64(r1)), "result.2", r2)
}

func widthsHandler(w http.ResponseWriter, r *http.Request) {
	a, b, c, d := int8(num(r, "a")), int16(num(r, "b")), int32(num(r, "c")), num(r, "d")
	e, f, g, h, i := uint8(unum(r, "e")), uint16(unum(r, "f")), uint32(unum(r, "g")), unum(r, "h"), uintptr(unum(r, "i"))
	j, k := r.URL.Query().Get("j") == "true", int(num(r, "k"))
	r0, r1 := widths(a, b, c, d, e, f, g, h, i, j, k)
	report(w, "main.widths", "arg.a", itoa(int64(a)), "arg.b", itoa(int64(b)), "arg.c", itoa(int64(c)), "arg.d", itoa(d),
		"arg.e", utoa(uint64(e)), "arg.f", utoa(uint64(f)), "arg.g", utoa(uint64(g)), "arg.h", utoa(h), "arg.i", utoa(uint64(i)),
		"arg.j", btoa(j), "arg.k", itoa(int64(k)), "result.0", itoa(int64(r0)), "result.1", utoa(r1))
}

func cartHandler(w http.ResponseWriter, r *http.Request) {
	name, price, qty := r.URL.Query().Get("name"), num(r, "price"), uint8(num(r, "qty"))
	mu.Lock()
	total := cart.Add(name, price, qty)
	mu.Unlock()
	report(w, "main.(*Cart).Add", "arg.c", ptoa(unsafe.Pointer(cart)), "arg.name", name, "arg.price", itoa(price),
		"arg.qty", utoa(uint64(qty)), "result.0", itoa(total))
}

func inspectHandler(w http.ResponseWriter, r *http.Request) {
	b := []byte(r.URL.Query().Get("b"))
	p := &Point{X: int(num(r, "px")), Y: int(num(r, "py")), Label: r.URL.Query().Get("label")}
	pt := Point{X: int(num(r, "x")), Y: int(num(r, "y")), Label: "value"}
	n, err := inspect(b, p, pt)
	errType := "nil"
	if err != nil {
		errType = fmt.Sprintf("%T", err)
	}
	report(w, "main.inspect", "arg.b", string(b), "arg.p", ptoa(unsafe.Pointer(p)), "arg.p.Y", itoa(int64(p.Y)),
		"arg.p.Label", p.Label, "arg.pt.X", itoa(int64(pt.X)), "arg.pt.Label", pt.Label,
		"result.n", itoa(int64(n)), "result.err", errType)
}

func floatsHandler(w http.ResponseWriter, r *http.Request) {
	x, _ := strconv.ParseFloat(r.URL.Query().Get("x"), 64)
	y64, _ := strconv.ParseFloat(r.URL.Query().Get("y"), 32)
	y := float32(y64)
	v := floats(x, y)
	report(w, "main.floats", "arg.x", ftoa(x), "arg.y", ftoa(float64(y)), "result.0", ftoa(v))
}

func sum4Handler(w http.ResponseWriter, r *http.Request) {
	k := int(num(r, "k"))
	v := sum4([4]int{1, 2, 3, k}, complex(float64(k), 1), k)
	report(w, "main.sum4", "arg.k", itoa(int64(k)), "result.0", itoa(int64(v)))
}

func factHandler(w http.ResponseWriter, r *http.Request) {
	n := int(num(r, "n"))
	report(w, "main.fact", "arg.n", itoa(int64(n)), "result.0", itoa(int64(fact(n))))
}

func deepHandler(w http.ResponseWriter, r *http.Request) {
	n, seed := int(num(r, "n")), uint32(unum(r, "seed"))
	done := make(chan uint32)
	go func() { done <- deep(n, seed) }() // a fresh goroutine: a small stack
	report(w, "main.deep", "arg.n", itoa(int64(n)), "arg.seed", utoa(uint64(seed)), "result.0", utoa(uint64(<-done)))
}

func outerHandler(w http.ResponseWriter, r *http.Request) {
	a, b := int(num(r, "a")), int(num(r, "b"))
	report(w, "main.outer", "arg.a", itoa(int64(a)), "arg.b", itoa(int64(b)), "result.0", itoa(int64(outer(a, b))))
}

func guardHandler(w http.ResponseWriter, r *http.Request) {
	n := int(num(r, "n"))
	report(w, "main.guard", "arg.n", itoa(int64(n)), "result.v", itoa(int64(guard(n))))
}

func describeHandler(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag")
	v := describe(r, tag)
	report(w, "main.describe", "arg.r", ptoa(unsafe.Pointer(r)), "arg.r.URL.Path", r.URL.Path, "arg.r.Method", r.Method, "arg.tag", tag, "result.0", itoa(int64(v)))
}

func scaleHandler(w http.ResponseWriter, r *http.Request) {
	x := int(num(r, "x"))
	report(w, "main.main.func1", "arg.x", itoa(int64(x)), "result.0", itoa(int64(scale(x))), "tiny", itoa(int64(tiny(x))))
}

// benchHandler calls Divide n times and reports the time per call, to
// measure what tracing a call costs.
func benchHandler(w http.ResponseWriter, r *http.Request) {
	n := int(num(r, "n"))
	start := time.Now()
	sum := 0
	for i := 0; i < n; i++ {
		q, rem := Divide(i+7, 3)
		sum += q + rem
	}
	elapsed := time.Since(start)
	if n > 0 {
		fmt.Fprintf(w, "%d ns/call (sum %d)\n", elapsed.Nanoseconds()/int64(n), sum)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	factor := 3 + len(os.Getenv("FUNCS_FACTOR")) // not a constant: scale must capture it
	scale = func(x int) int { return x * factor }

	mux := http.NewServeMux()
	mux.HandleFunc("/divide", divideHandler)
	mux.HandleFunc("/parse", parseHandler)
	mux.HandleFunc("/widths", widthsHandler)
	mux.HandleFunc("/cart", cartHandler)
	mux.HandleFunc("/inspect", inspectHandler)
	mux.HandleFunc("/floats", floatsHandler)
	mux.HandleFunc("/sum4", sum4Handler)
	mux.HandleFunc("/fact", factHandler)
	mux.HandleFunc("/deep", deepHandler)
	mux.HandleFunc("/outer", outerHandler)
	mux.HandleFunc("/guard", guardHandler)
	mux.HandleFunc("/describe/", describeHandler)
	mux.HandleFunc("/scale", scaleHandler)
	mux.HandleFunc("/bench", benchHandler)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, mux); err != nil && !strings.Contains(err.Error(), "closed") {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

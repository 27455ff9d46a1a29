// Package instrumentors defines what an instrumentor declares. Each
// instrumented library has its own sub-package holding one Instrumentor value:
// the functions to probe, the struct members its BPF program reads, the
// program itself, and a function that turns one event into a span. The shared
// core (package attach) resolves offsets, finds RET sites, loads and attaches;
// an instrumentor never does that itself.
package instrumentors

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/uranus-otel/uranus/binary"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
)

// Instrumentor is the declaration of one instrumented library.
type Instrumentor struct {
	// ID is the short name used on the command line and in logs ("http-server").
	ID string
	// Doc is one line for --help and inspect.
	Doc string
	// Library names what it instruments, as a user would ("net/http
	// client"). When a binary lacks one of its probed functions, the
	// library is taken as not linked into it: an INFO line "no net/http
	// client in this binary", not a warning. Empty for instrumentors of
	// user-named functions, whose absence is worth a warning.
	Library string
	// GoVersions is a hashicorp/go-version constraint on the target's Go
	// version; empty means every version uranus supports.
	GoVersions string
	// Module is the module that the instrumented library comes from, for a
	// library outside the standard library ("google.golang.org/grpc"): a
	// binary whose build info does not list it does not link the library
	// (an INFO fact, as for Library), and the members its Consts name
	// with offsets.Field.Module set come from that module's offsets table
	// for the version linked in. ModuleVersions constrains that version
	// as GoVersions does Go's ("v" left out: ">= 1.60").
	Module         string
	ModuleVersions string
	// Spec loads the BPF collection (a bpf2go Load function).
	Spec func() (*ebpf.CollectionSpec, error)
	// Probes are the functions to attach to.
	Probes []Probe
	// Consts are the struct-member offsets the BPF program needs, by the name
	// of the volatile const that receives each.
	Consts []Const
	// Values are constants that depend on the Go version rather than on a
	// struct layout (where a result lives, which algorithm a release uses).
	Values []Value
	// Convert fills span from one ring-buffer record (header included; the
	// core has already filled identity and timing from the header). Nil for
	// an instrumentor whose programs only keep state for others.
	Convert func(record []byte, span *otel.Span, t Target) error
	// InFlight names the map of calls entered and not yet returned, when
	// its values start with struct event_header (keyed by goroutine). A
	// call still in it when its process exits, or uranus does, becomes a
	// span of InFlightKind marked uranus.incomplete=true, ending then: the
	// call is not lost, and spans it parented still find their parent.
	InFlight     string
	InFlightKind trace.SpanKind
	// InFlightConvert, when set, names and fills such a span from the
	// in-flight map's value (what was read at entry); without it the span
	// is named "ID call in flight".
	InFlightConvert func(value []byte, span *otel.Span, t Target) error
	// Stats names the instrumentor-specific counters STAT_EXTRA to
	// STAT_EXTRA4, when it uses them.
	Stats [4]string
	// OffByDefault instrumentors run only when named with --instrument.
	OffByDefault bool
	// Dynamic, when set, plans more probes for one binary at attach time:
	// functions the user names. Its result joins Probes and Consts.
	Dynamic func(bin *binary.File) (*Dynamic, error)
	// NonGo instrumentors also attach to programs that are not Go (C, C++);
	// the others skip them.
	NonGo bool
	// DialsEarly says the library opens connections before the calls that
	// use them (gRPC's ClientConn dials at Dial): with trace context on
	// the wire, its processes are enrolled when attached, since a
	// connection opened before its process is enrolled is never watched.
	DialsEarly bool
	// Options are the command-line flags the instrumentor takes (see
	// Option); Configure turns their values into the instrumentor a run
	// uses: a copy of decl, the declaration, set up for them. It may turn
	// an instrumentor that is off by default on (OffByDefault false), when
	// the options ask for what only it gives. Options live in the
	// instrumentor, never in package variables that the command sets.
	Options   []Option
	Configure func(decl *Instrumentor, s Settings, log *slog.Logger) (*Instrumentor, error)
}

// ErrNoSpan, returned by Convert, says the instrumentor handled the record
// itself and no span is to be made of it (the key log writes a secret to
// its file): not a bad record.
var ErrNoSpan = errors.New("record handled by its instrumentor: no span")

// Dynamic is what an instrumentor decided for one binary.
type Dynamic struct {
	Probes []Probe
	Consts map[string]uint64
	// MapEntries are written into the loaded collection's maps, by map
	// name, before any probe is attached (per-function settings, say).
	MapEntries map[string][]MapEntry
	// State reaches Convert, for this target's records, as Target.State().
	State any
}

// MapEntry is one key and value for a BPF map; both are written as
// cilium/ebpf marshals them (fixed-size structs, integers, byte arrays).
type MapEntry struct {
	Key, Value any
}

// Probe is one function: its entry, every RET instruction, or both.
type Probe struct {
	Symbol string // as the symbol table spells it: "net/http.serverHandler.ServeHTTP"
	Entry  string // program to attach at the first instruction; "" for none
	Return string // program to attach at every RET instruction; "" for none
	// Optional probes may be missing from a binary (the linker dropped an
	// unused function) without failing the instrumentor.
	Optional bool
	// Requires names a feature (e.g. "inject") the probe serves; when the
	// feature is off the probe is not attached and its programs are not
	// even loaded. The program sees the feature as the constant
	// feature_<name>.
	Requires string
	// Cookie is what bpf_get_attach_cookie returns in the programs attached
	// for this probe: which of several functions sharing a program fired.
	Cookie uint64
	// Uretprobe attaches Return as a uretprobe instead of at each RET: only
	// for code that is not Go, where it is safe and sees every return path
	// (Go's moving stacks break uretprobes; they are refused on Go code).
	Uretprobe bool
}

// Features a Probe can require (Probe.Requires). The propagation mode
// decides which is on; at most one of the two.
const (
	// FeatureWire: trace context inserted into outgoing requests at the
	// socket by the kernel (sockops + sk_msg); the process is only read.
	FeatureWire = "wire"
	// FeatureInject: trace context written into the process's own request
	// buffer (bpf_probe_write_user), where kernel lockdown allows it.
	FeatureInject = "inject"
)

// Value is a constant chosen by the target's Go version, or by the version
// of the instrumentor's Module (a signature that changed between releases).
type Value struct {
	Name       string // volatile const in the C program
	GoVersions string // hashicorp/go-version constraint; the first match wins
	// ModuleVersions constrains the version of the instrumentor's Module
	// instead ("v" left out: ">= 1.60"); with both set, both must hold.
	ModuleVersions string
	Value          uint64
}

// Target is what Convert may ask about the process a record came from.
type Target interface {
	// TypeName names the Go type whose descriptor is at addr, as %T prints
	// it ("*net.OpError"); "" when it cannot be told.
	TypeName(addr uint64) string
	// State is what the instrumentor's Dynamic returned for this process.
	State() any
}

// Const binds a BPF constant to the offset of a struct member.
type Const struct {
	Name  string // volatile const in the C program, e.g. "off_req_method"
	Field offsets.Field
	// Or names the same member where other Go versions keep it (its type
	// renamed or moved to another package, as Go 1.27 moved HTTP/2 into
	// net/http/internal/http2). The first of Field, Or... that the target's
	// Go version has gives the offset.
	Or []offsets.Field
	// Optional members may be absent in some Go versions; the program then
	// receives OFFSET_ABSENT and must cope. A missing required member stops
	// the instrumentor for that target.
	Optional bool
	// Reports names what the program cannot report without this member,
	// for an Optional member that every supported Go version is expected to
	// have under one of its names (e.g. "http.response.status_code of
	// HTTP/2 requests"). When a target has none of them, attach warns with
	// this text, and the program must leave the value out rather than send
	// a default that looks real. Unset, absence is expected and silent (a
	// member that only newer releases have).
	Reports string
}

// Names lists where c's member may live: Field, then Or.
func (c Const) Names() []offsets.Field {
	return append([]offsets.Field{c.Field}, c.Or...)
}

// HeaderConsts are the members bpf/go_header.h reads to find keys in a
// net/http.Header, for the instrumentors that include it. Each map
// implementation's members are absent in the other's Go versions.
var HeaderConsts = []Const{
	{Name: "off_hmap_b", Field: offsets.Field{Struct: "runtime.hmap", Member: "B"}, Optional: true},
	{Name: "off_hmap_buckets", Field: offsets.Field{Struct: "runtime.hmap", Member: "buckets"}, Optional: true},
	{Name: "off_hmap_oldbuckets", Field: offsets.Field{Struct: "runtime.hmap", Member: "oldbuckets"}, Optional: true},
	{Name: "off_swiss_dirptr", Field: offsets.Field{Struct: "internal/runtime/maps.Map", Member: "dirPtr"}, Optional: true},
	{Name: "off_swiss_dirlen", Field: offsets.Field{Struct: "internal/runtime/maps.Map", Member: "dirLen"}, Optional: true},
	{Name: "off_table_groups", Field: offsets.Field{Struct: "internal/runtime/maps.table", Member: "groups"}, Optional: true},
	{Name: "off_groups_data", Field: offsets.Field{Struct: "internal/runtime/maps.groupsReference", Member: "data"}, Optional: true},
	{Name: "off_groups_mask", Field: offsets.Field{Struct: "internal/runtime/maps.groupsReference", Member: "lengthMask"}, Optional: true},
}

// WireConsts are the members bpf/wire.h reads to find a TCP connection's
// addresses from a *net.TCPConn (or a *tls.Conn over one), for the
// instrumentors that match connections to trace context on the wire.
var WireConsts = []Const{
	{Name: "off_tlsconn_conn", Field: offsets.Field{Struct: "crypto/tls.Conn", Member: "conn"}},
	{Name: "off_tcpconn_conn", Field: offsets.Field{Struct: "net.TCPConn", Member: "conn"}},
	{Name: "off_conn_fd", Field: offsets.Field{Struct: "net.conn", Member: "fd"}},
	{Name: "off_netfd_laddr", Field: offsets.Field{Struct: "net.netFD", Member: "laddr"}},
	{Name: "off_netfd_raddr", Field: offsets.Field{Struct: "net.netFD", Member: "raddr"}},
	{Name: "off_tcpaddr_ip", Field: offsets.Field{Struct: "net.TCPAddr", Member: "IP"}},
	{Name: "off_tcpaddr_port", Field: offsets.Field{Struct: "net.TCPAddr", Member: "Port"}},
}

// Fields lists the struct members every instrumentor in list needs, without
// duplicates, for the offsets generator and for reading a target's DWARF.
func Fields(list []*Instrumentor) []offsets.Field {
	seen := map[offsets.Field]bool{}
	var out []offsets.Field
	add := func(f offsets.Field) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range offsets.Runtime {
		add(f)
	}
	for _, in := range list {
		for _, c := range in.Consts {
			for _, f := range c.Names() {
				add(f)
			}
		}
	}
	return out
}

// UnreportedKey lists, on a span, the attributes its instrumentor could not
// read for this target (see Const.Reports), so that a missing value is not
// taken for one the program never sent.
const UnreportedKey = attribute.Key("uranus.unreported")

// Unreported is the UnreportedKey attribute for the given attribute names.
func Unreported(names ...string) attribute.KeyValue {
	return UnreportedKey.StringSlice(names)
}

// CString returns the bytes a BPF program copied into buf for a Go value of
// full length n: the value itself, or its first len(buf) bytes when longer.
// Invalid UTF-8 (a request for /%ff, or a value cut inside a character)
// becomes U+FFFD: OTLP rejects a whole batch over one invalid string.
func CString(buf []byte, n uint32) string {
	if int(n) < len(buf) {
		buf = buf[:n]
	}
	return strings.ToValidUTF8(string(buf), "\uFFFD")
}

// HostPort splits a Host header or address into host and port for the
// server.address/port attributes; without an explicit port the scheme's
// default is used (0 when the scheme has none). IPv6 brackets are removed.
func HostPort(hostport, scheme string) (string, int) {
	if hostport == "" {
		return "", 0
	}
	if host, p, err := net.SplitHostPort(hostport); err == nil {
		port, _ := strconv.Atoi(p)
		return host, port
	}
	host := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	switch scheme {
	case "http":
		return host, 80
	case "https":
		return host, 443
	}
	return host, 0
}

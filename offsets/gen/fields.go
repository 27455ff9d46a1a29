package main

import (
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/all"
	"github.com/uranus-otel/uranus/offsets"
)

// wantedFields lists the struct members the table records, by the names
// DWARF gives them: what every instrumentor declares (so adding a field to
// an instrumentor and running the generator is all a new field needs), plus
// the members below, which instrumentors being written will read.
//
// A member that only some Go versions have is fine (it is recorded as absent
// elsewhere); a member no checked version has is a misspelling and fails the
// generation.
func wantedFields() []offsets.Field {
	var fs []offsets.Field
	seen := map[offsets.Field]bool{}
	for _, f := range instrumentors.Fields(all.List) {
		// Members of modules outside the standard library follow the
		// module's version, not Go's: they belong to that module's
		// table (offsets/modules), not to this one.
		if f.Module == "" {
			fs = append(fs, f)
			seen[f] = true
		}
	}
	add := func(s string, members ...string) {
		for _, m := range members {
			if f := (offsets.Field{Struct: s, Member: m}); !seen[f] {
				seen[f] = true
				fs = append(fs, f)
			}
		}
	}
	add("runtime.g", "goid", "parentGoid")
	add("net/http.Request", "Method", "URL", "Proto", "ProtoMajor", "ProtoMinor", "Header",
		"ContentLength", "Host", "RemoteAddr", "RequestURI", "TLS", "ctx", "Pattern", "pat", "Response")
	add("net/http.pattern", "str")
	add("net/url.URL", "Scheme", "Opaque", "User", "Host", "Path", "RawPath", "RawQuery", "Fragment")
	add("net/url.Userinfo", "username", "password", "passwordSet")
	add("net/http.response", "conn", "req", "status", "wroteHeader", "written", "contentLength", "handlerHeader")
	add("net/http.conn", "server", "rwc", "remoteAddr", "tlsState")
	add("net/http.Response", "Status", "StatusCode", "Proto", "Header", "ContentLength", "Request", "TLS")
	// Go 1.27 moved the bundled HTTP/2 server to net/http/internal/http2,
	// where the request is a ServerRequest value instead of a *Request.
	add("net/http.http2responseWriter", "rws")
	add("net/http.http2responseWriterState", "status", "req", "stream")
	add("net/http/internal/http2.responseWriter", "rws")
	add("net/http/internal/http2.responseWriterState", "status", "req", "stream")
	add("net/http.persistConn", "conn", "tlsState", "t", "cacheKey")
	// Go 1.13–1.19 track the handshake in handshakeStatus, 1.20+ in
	// isHandshakeComplete; the handshakeComplete member is older than 1.13.
	add("crypto/tls.Conn", "conn", "isClient", "handshakeErr", "vers", "haveVers", "config",
		"cipherSuite", "didResume", "serverName", "isHandshakeComplete", "handshakeStatus",
		"input", "rawInput")
	add("crypto/tls.Config", "ServerName")
	add("crypto/tls.CertificateVerificationError", "UnverifiedCertificates", "Err")
	add("crypto/tls.ConnectionState", "Version", "HandshakeComplete", "DidResume", "CipherSuite",
		"ServerName", "NegotiatedProtocol")
	add("net.TCPConn", "conn")
	add("net.conn", "fd")
	add("net.netFD", "laddr", "raddr")
	add("net.TCPAddr", "IP", "Port", "Zone")
	add("runtime.hmap", "count", "flags", "B", "hash0", "buckets", "oldbuckets")
	add("internal/runtime/maps.Map", "used", "seed", "dirPtr", "dirLen", "globalDepth", "globalShift")
	add("internal/runtime/maps.table", "used", "capacity", "growthLeft", "localDepth", "index", "groups")
	add("internal/runtime/maps.groupsReference", "data", "lengthMask")
	return fs
}

// optionalStructs are the structs that legitimately do not exist in some Go
// versions, with the reason. Any other wanted struct missing from the sample's
// DWARF means the sample program did not keep it alive, and fails the run.
// An optional struct must still exist in a contiguous run of the checked
// versions (it appeared, or it went away), or the run fails too.
func optionalStructs() map[string]string {
	return map[string]string{
		"net/http.pattern":                            "ServeMux patterns arrived in Go 1.22",
		"net/http.http2responseWriter":                "HTTP/2 moved to net/http/internal/http2 in Go 1.27",
		"net/http.http2responseWriterState":           "HTTP/2 moved to net/http/internal/http2 in Go 1.27",
		"net/http/internal/http2.responseWriter":      "HTTP/2 moved to net/http/internal/http2 in Go 1.27",
		"net/http/internal/http2.responseWriterState": "HTTP/2 moved to net/http/internal/http2 in Go 1.27",
		"runtime.hmap":                                "swiss maps replaced it in Go 1.24",
		"crypto/tls.CertificateVerificationError":     "arrived in Go 1.20",
		"internal/runtime/maps.Map":                   "swiss maps arrived in Go 1.24",
		"internal/runtime/maps.table":                 "swiss maps arrived in Go 1.24",
		"internal/runtime/maps.groupsReference":       "swiss maps arrived in Go 1.24",
		"runtime._type":                               "an alias of internal/abi.Type from Go 1.21",
		"internal/abi.Type":                           "the type descriptor moved to internal/abi in Go 1.21",
	}
}

// moduleSince is where a module's table starts by default (-since): a
// module's whole history can take hours to build, and older releases fall
// back to the target's DWARF. A module not listed here needs -since.
var moduleSince = map[string]string{
	"golang.org/x/net":       "v0.20.0",
	"google.golang.org/grpc": "v1.35.0",
}

// wantedModuleFields lists the members of module's structs that its table
// (offsets/modules) records: what the instrumentors declare for module, plus
// the members below, which instrumentors being written will read. As in
// wantedFields, a member no checked release has fails the generation.
func wantedModuleFields(module string) []offsets.Field {
	var fs []offsets.Field
	seen := map[offsets.Field]bool{}
	for _, f := range instrumentors.Fields(all.List) {
		if f.Module == module && !seen[f] {
			fs = append(fs, f)
			seen[f] = true
		}
	}
	add := func(s string, members ...string) {
		for _, m := range members {
			if f := (offsets.Field{Struct: s, Member: m, Module: module}); !seen[f] {
				seen[f] = true
				fs = append(fs, f)
			}
		}
	}
	switch module {
	case "golang.org/x/net":
		// HTTP/2 of x/net, as programs that configure it themselves
		// (grpc, http2.Transport, h2c) link it. The layouts are those of a
		// build with a Go older than 1.27: from Go 1.27 on, x/net's
		// http2 wraps net/http's (server_wrap.go, transport_wrap.go) and
		// these structs change shape.
		add("golang.org/x/net/http2.ClientConn", "tconn", "nextStreamID")
		add("golang.org/x/net/http2.serverConn", "conn", "remoteAddrStr")
		add("golang.org/x/net/http2.responseWriter", "rws")
		add("golang.org/x/net/http2.responseWriterState", "status", "req")
	case "google.golang.org/grpc":
		// gRPC-Go, for the instrumentor being written in
		// instrumentors/grpc: once it registers, its Consts name the same
		// fields and seen keeps each once. The table is keyed by grpc's
		// version; the x/net HTTP/2 frames, hpack fields and genproto
		// status below are those of the x/net and genproto releases the
		// sample links with that grpc release (go mod tidy picks them),
		// whose layouts have not changed in years.
		add("google.golang.org/grpc/internal/transport.Stream", "id", "method", "ctx")
		// ServerStream, which embeds Stream, arrived in v1.69.0.
		add("google.golang.org/grpc/internal/transport.ServerStream", "Stream")
		// The client's address: remoteAddr up to v1.59.x, peer (a
		// peer.Peer value) from v1.60.0.
		add("google.golang.org/grpc/internal/transport.http2Server", "remoteAddr", "peer")
		add("google.golang.org/grpc/peer.Peer", "Addr")
		add("google.golang.org/grpc/internal/status.Status", "s")
		// The *Status of an Error: e (a *spb.Status) up to v1.39.x, s
		// (a *Status) from v1.40.0.
		add("google.golang.org/grpc/internal/status.Error", "e", "s")
		add("google.golang.org/genproto/googleapis/rpc/status.Status", "Code", "Message")
		add("google.golang.org/grpc.ClientConn", "target")
		add("golang.org/x/net/http2.MetaHeadersFrame", "HeadersFrame", "Fields")
		add("golang.org/x/net/http2.HeadersFrame", "FrameHeader")
		add("golang.org/x/net/http2.FrameHeader", "StreamID")
		add("golang.org/x/net/http2/hpack.HeaderField", "Name", "Value")
	}
	return fs
}

// moduleOptionalStructs are, per module, the structs that legitimately do
// not exist in some of its releases, with the reason (see optionalStructs).
func moduleOptionalStructs(module string) map[string]string {
	opt := map[string]string{}
	for s, why := range moduleOptional[module] {
		opt[s] = why
	}
	return opt
}

// moduleOptional backs moduleOptionalStructs: module -> struct -> reason.
var moduleOptional = map[string]map[string]string{
	"google.golang.org/grpc": {
		"google.golang.org/grpc/internal/transport.ServerStream": "split out of Stream in v1.69.0",
		"google.golang.org/grpc.clientStreamWrapper":             "arrived in v1.84.0",
	},
}

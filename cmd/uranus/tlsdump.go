package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/offsets"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

const tlsDumpUsage = `NAME
    uranus tls-dump — print what a Go program sends and receives over TLS, live

SYNOPSIS
    uranus tls-dump --exe PATH|NAME [--bytes N | --no-plaintext] [--keylog FILE]
    uranus tls-dump --pid N [--bytes N | --no-plaintext] [--keylog FILE]

DESCRIPTION
    Attaches to every process running the executable (or to process N) and
    prints one line per event of crypto/tls, as it happens:

      pid 4242 conn#1 handshake server peer 127.0.0.1:53312 TLS 1.3 TLS_AES_128_GCM_SHA256 sni=localhost
      pid 4242 conn#1 read   78 B (in 78, out 0)      "GET / HTTP/1.1\r\nHost: localhost\r\n…"
      pid 4242 conn#1 write 131 B (in 78, out 131)    "HTTP/1.1 200 OK\r\n…"

    A connection is numbered when first seen in its process; its handshake
    line gives the peer, protocol, cipher and server name. Each read is what
    (*tls.Conn).Read returned, each write what (*tls.Conn).Write was given,
    with the connection's running byte totals and the first bytes of the
    plaintext (\r, \n, \t and \" escaped, other unprintable bytes as '.').

    The plaintext goes to this terminal only: nothing is exported. It can
    hold passwords, tokens and personal data; treat the output accordingly.

    With --keylog FILE, the secrets of every handshake (client and server,
    TLS 1.2 and 1.3) are appended to FILE in the NSS key log format, which
    Wireshark and tshark read: a packet capture of the same connections
    then opens decrypted,

      tshark -r capture.pcap -o tls.keylog_file:FILE

    and a line per secret is printed here (its label and the start of the
    client random, never the secret):

      pid 4242 keylog CLIENT_TRAFFIC_SECRET_0 client_random 5f1c09a2…

    WARNING: FILE lets anyone who holds it and a capture of the traffic
    (taken at any time, by anyone) read all of that traffic. uranus creates
    it with mode 0600 and refuses a FILE others can read; delete it when
    done. Nothing is written unless --keylog is given.

OPTIONS
    --exe PATH|NAME  processes running this executable (repeatable)
    --pid N          this one process
    --bytes N        plaintext bytes shown per read or write (1 to 4096; default 128)
    --no-plaintext   do not tap reads and writes: print handshakes (and with
                     --keylog, secrets) only
    --keylog FILE    append the TLS secrets to FILE (NSS key log format; see
                     the warning above)

COST
    One probe hit per Write and two per Read of the target's TLS
    connections (about 20 µs each; none with --no-plaintext), and two per
    handshake; with --keylog, one more per secret (one per TLS 1.2
    handshake, four per TLS 1.3 handshake).
`

func tlsDumpMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("uranus tls-dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var m target.Matcher
	fs.Func("exe", "", func(s string) error { m.Exes = append(m.Exes, s); return nil })
	fs.IntVar(&m.PID, "pid", 0, "")
	bytes := fs.String("bytes", "128", "")
	noPlaintext := fs.Bool("no-plaintext", false, "")
	keylog := fs.String("keylog", "", "")
	fs.Usage = func() { fmt.Fprint(stderr, tlsDumpUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	n, err := strconv.Atoi(*bytes)
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q (see uranus tls-dump --help)", fs.Arg(0))
	case err != nil || n < 1 || n > gotls.MaxCaptureBytes:
		err = fmt.Errorf("--bytes %q: give a count from 1 to %d", *bytes, gotls.MaxCaptureBytes)
	default:
		err = m.Validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "uranus tls-dump:", err)
		return 2
	}
	opts := tlsDumpOptions{capture: uint32(n), plaintext: !*noPlaintext}
	if *keylog != "" {
		f, err := gotls.OpenKeyLogFile("--keylog", *keylog)
		if err != nil {
			fmt.Fprintln(stderr, "uranus tls-dump:", err)
			return 1
		}
		defer f.Close()
		opts.keylog = f
		fmt.Fprintf(stderr, "uranus tls-dump: WARNING: writing TLS secrets to %s: with it, anyone holding a capture of this traffic can read it; delete it when done\n", *keylog)
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := tlsDump(ctx, m, opts, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "uranus tls-dump:", err)
		return 1
	}
	return 0
}

// tlsDumpOptions are what tls-dump attaches and prints.
type tlsDumpOptions struct {
	capture   uint32   // plaintext bytes per call
	plaintext bool     // attach the tap
	keylog    *os.File // where secrets go; nil: the key log instrumentor is not attached
}

// tlsDump attaches the handshake instrumentor, the tap (in the mode that
// records every call) and the key log instrumentor as opts asks, and prints
// their records instead of making spans.
func tlsDump(ctx context.Context, m target.Matcher, opts tlsDumpOptions, stdout, stderr io.Writer) error {
	list := []*instrumentors.Instrumentor{gotls.Instrumentor}
	if opts.plaintext {
		list = append(list, gotls.TapWith(opts.capture, true))
	}
	if opts.keylog != nil {
		list = append(list, gotls.KeyLogRecording())
	}
	if m.PID != 0 {
		if err := checkPID(m.PID, list); err != nil {
			return err
		}
	}
	table, err := offsets.Embedded()
	if err != nil {
		return fmt.Errorf("reading the built-in offsets table: %w", err)
	}
	pipeline, err := otel.NewPipeline(ctx, otel.Config{Exporters: []string{"none"}})
	if err != nil {
		return err
	}
	defer pipeline.Shutdown(context.Background())
	p := &tlsPrinter{w: stdout, errw: stderr, conns: map[connKey]int{}, next: map[int]int{}}
	if opts.keylog != nil {
		p.keylog = opts.keylog
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	att, err := attach.New(attach.Options{
		Instrumentors: list,
		Table:         table,
		Pipeline:      pipeline,
		Logger:        log,
		Records:       p.record,
	})
	if err != nil {
		return err
	}
	defer att.Close()
	fmt.Fprintf(stderr, "uranus tls-dump: waiting for %s (Ctrl-C to stop)\n", m)
	f := &follower{
		att: att,
		m:   m,
		attached: func(t *attach.Target) {
			var skipped []string
			for _, pl := range t.Plans {
				if pl.Skip != "" {
					skipped = append(skipped, pl.Inst.ID+": "+pl.Skip)
				}
			}
			if len(skipped) > 0 {
				fmt.Fprintf(stderr, "uranus tls-dump: pid %d: not watched: %s\n", t.Process.PID, strings.Join(skipped, "; "))
			}
			fmt.Fprintf(stderr, "uranus tls-dump: watching pid %d (%s, %s)\n", t.Process.PID, t.Process.Exe, t.GoVersion)
		},
		exited: func(p target.Process, _ int) {
			fmt.Fprintf(stderr, "uranus tls-dump: pid %d exited\n", p.PID)
		},
		vanished: func(p target.Process) {
			fmt.Fprintf(stderr, "uranus tls-dump: pid %d exited while being attached\n", p.PID)
		},
		failed: func(p target.Process, err error) {
			if m.PID == 0 {
				fmt.Fprintf(stderr, "uranus tls-dump: pid %d: %v\n", p.PID, err)
			}
		},
	}
	return f.follow(ctx)
}

type connKey struct {
	pid  int
	conn uint64
}

// tlsPrinter turns records into lines; Run calls it from one goroutine,
// the lock only guards against a future second reader.
type tlsPrinter struct {
	mu     sync.Mutex
	w      io.Writer
	keylog io.Writer       // NSS key log lines; nil without --keylog
	errw   io.Writer       // where a failed key log write is told
	conns  map[connKey]int // connection numbers, per process
	next   map[int]int
}

// number names a connection; a handshake on an address seen before is a
// new connection there (the old *tls.Conn was freed).
func (p *tlsPrinter) number(pid int, conn uint64, handshake bool) int {
	k := connKey{pid, conn}
	if n, ok := p.conns[k]; ok && !handshake {
		return n
	}
	p.next[pid]++
	p.conns[k] = p.next[pid]
	return p.next[pid]
}

func (p *tlsPrinter) record(t *attach.Target, inst *instrumentors.Instrumentor, record []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pid := t.Process.PID
	switch inst.ID {
	case gotls.KeyLog.ID:
		if p.keylog == nil {
			return true // never attached without a file; drop rather than let a secret near a span
		}
		s, err := gotls.DecodeKeyLog(record)
		if err != nil {
			fmt.Fprintf(p.w, "pid %d: %v\n", pid, err)
			return true
		}
		// One write per line, unbuffered: a reader of the file (Wireshark
		// live) sees each secret as soon as it is known.
		if _, err := io.WriteString(p.keylog, s.NSSLine()); err != nil {
			fmt.Fprintf(p.errw, "uranus tls-dump: writing the key log: %v\n", err)
		}
		fmt.Fprintf(p.w, "pid %d keylog %s client_random %x…\n", pid, s.Label, s.ClientRandom[:4])
	case gotls.Tap.ID:
		c, err := gotls.DecodeTap(record)
		if err != nil {
			fmt.Fprintf(p.w, "pid %d: %v\n", pid, err)
			return true
		}
		dir := "read "
		if c.Write {
			dir = "write"
		}
		shown := printable(c.Data)
		if uint64(len(c.Data)) < c.Len {
			shown += "…"
		}
		fmt.Fprintf(p.w, "pid %d conn#%d %s %5d B (in %d, out %d) \"%s\"\n",
			pid, p.number(pid, c.Conn, false), dir, c.Len, c.ConnRead, c.ConnWritten, shown)
	case gotls.Instrumentor.ID:
		h, err := gotls.DecodeHandshake(record, typeNamer{t})
		if err != nil {
			fmt.Fprintf(p.w, "pid %d: %v\n", pid, err)
			return true
		}
		var b strings.Builder
		side := "server"
		if h.Client {
			side = "client"
		}
		fmt.Fprintf(&b, "pid %d conn#%d handshake %s", pid, p.number(pid, h.Conn, true), side)
		if h.PeerIP != "" {
			b.WriteString(" peer " + net.JoinHostPort(h.PeerIP, strconv.Itoa(h.PeerPort)))
		}
		if name, ver := gotls.VersionName(h.Version); name != "" {
			fmt.Fprintf(&b, " %s %s", strings.ToUpper(name), ver)
		}
		if h.Cipher != 0 {
			b.WriteString(" " + tls.CipherSuiteName(h.Cipher))
		}
		if h.ServerName != "" {
			b.WriteString(" sni=" + h.ServerName)
		}
		if h.ALPN != "" {
			b.WriteString(" alpn=" + h.ALPN)
		}
		if h.Failed {
			msg := h.Err
			if msg == "" {
				msg = h.ErrType
			}
			b.WriteString(" FAILED: " + msg)
		}
		fmt.Fprintln(p.w, b.String())
	default:
		return false
	}
	return true
}

// typeNamer is the instrumentors.Target of a record read outside Convert.
type typeNamer struct{ t *attach.Target }

func (n typeNamer) TypeName(addr uint64) string { return n.t.TypeName(addr) }
func (n typeNamer) State() any                  { return nil }

// printable shows plaintext on one terminal line.
func printable(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		switch {
		case c == '\r':
			s.WriteString(`\r`)
		case c == '\n':
			s.WriteString(`\n`)
		case c == '\t':
			s.WriteString(`\t`)
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		default:
			s.WriteByte('.')
		}
	}
	return s.String()
}

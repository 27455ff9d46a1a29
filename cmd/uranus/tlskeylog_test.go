package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

func TestTLSDumpKeyLogBadFile(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.keys")
	if err := os.WriteFile(open, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644) // past the umask
	var out, errb bytes.Buffer
	code := tlsDumpMain([]string{"--pid", fmt.Sprint(os.Getpid()), "--keylog", open}, &out, &errb)
	if want := "mode 0644, which lets others read the secrets"; code != 1 || !strings.Contains(errb.String(), want) {
		t.Errorf("--keylog on a 0644 file: exit %d, stderr %q; want 1 and %q", code, errb.String(), want)
	}
	errb.Reset()
	code = tlsDumpMain([]string{"--pid", fmt.Sprint(os.Getpid()), "--keylog", dir}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "--keylog") {
		t.Errorf("--keylog on a directory: exit %d, stderr %q; want 1", code, errb.String())
	}
	errb.Reset()
	if code := tlsDumpMain([]string{"--help"}, &out, &errb); code != 0 ||
		!strings.Contains(errb.String(), "--keylog FILE") || !strings.Contains(errb.String(), "anyone who holds it and a capture") {
		t.Errorf("--help does not describe --keylog and its risk: exit %d\n%s", code, errb.String())
	}
}

// keyLogLine is a line of the NSS key log format as Go writes it: a label,
// the 32-byte client random, a secret of 32 or 48 bytes (the TLS 1.2
// master secret, a TLS 1.3 traffic secret of SHA-256 or SHA-384).
var keyLogLine = regexp.MustCompile(`^([A-Z0-9_]+) ([0-9a-f]{64}) ([0-9a-f]{64}|[0-9a-f]{96})$`)

// TestTLSDumpKeyLog checks the key log end to end: while tls-dump --keylog
// watches tlsapp and tshark captures its port, this test asks the app, over
// TLS, to fetch a page from itself over TLS (the app is then a server twice
// and a client once). The secrets uranus wrote must decrypt the capture:
// tshark finds both HTTP requests with the file, none without it. The
// secrets of the test's own connection must be those its crypto/tls logs.
func TestTLSDumpKeyLog(t *testing.T) {
	requireTshark(t)
	certFile, keyFile := writeTestCert(t, t.TempDir())
	for _, c := range []struct {
		goVersion string
		tlsVer    uint16
		plaintext bool // also tap reads and writes (tls-dump's default)
	}{
		{"1.16.15", tls.VersionTLS12, false},
		{"1.16.15", tls.VersionTLS13, true},
		{"1.27.4", tls.VersionTLS12, true},
		{"1.27.4", tls.VersionTLS13, false},
	} {
		name := fmt.Sprintf("go%s/tls1%d", c.goVersion, c.tlsVer-tls.VersionTLS10)
		t.Run(name, func(t *testing.T) {
			testKeyLog(t, c.goVersion, c.tlsVer, c.plaintext, false, certFile, keyFile)
		})
	}
}

// TestSidecarKeyLog: the sidecar itself writes the key log when asked
// (--tls-keylog FILE, the key log instrumentor's own option), as tls-dump
// --keylog does, beside its spans; the capture opens with it.
func TestSidecarKeyLog(t *testing.T) {
	requireTshark(t)
	certFile, keyFile := writeTestCert(t, t.TempDir())
	for _, c := range []struct {
		goVersion string
		tlsVer    uint16
	}{
		{"1.16.15", tls.VersionTLS12},
		{"1.27.4", tls.VersionTLS13},
	} {
		name := fmt.Sprintf("go%s/tls1%d", c.goVersion, c.tlsVer-tls.VersionTLS10)
		t.Run(name, func(t *testing.T) {
			testKeyLog(t, c.goVersion, c.tlsVer, false, true, certFile, keyFile)
		})
	}
}

func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	cert, err := selfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// testKeyLog runs uranus tls-dump --keylog, or with sidecar the uranus
// sidecar with --tls-keylog, on the app, and checks the key log it writes.
func testKeyLog(t *testing.T, goVersion string, tlsVer uint16, plaintext, sidecar bool, certFile, keyFile string) {
	dir := t.TempDir()
	app := e2e.Start(t, e2e.BuildTarget(t, "tlsapp", goVersion, testapp.Options{}), "-cert", certFile, "-key", keyFile, "-ca", certFile)
	_, port, err := net.SplitHostPort(app.Addr)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.log")
	args := []string{"tls-dump", "--pid", fmt.Sprint(app.Cmd.Process.Pid), "--keylog", keys}
	if !plaintext {
		args = append(args, "--no-plaintext")
	}
	attached, warning := "watching pid", "WARNING: writing TLS secrets to "+keys
	if sidecar {
		args = []string{"--pid", fmt.Sprint(app.Cmd.Process.Pid), "--tls-keylog", keys}
		attached, warning = "msg=attached", "writing TLS secrets to "+keys
	}
	dump := exec.Command(uranusBin, args...)
	dump.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	var dumpOut, dumpErr lockedBuffer
	dump.Stdout, dump.Stderr = &dumpOut, &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if dump.ProcessState == nil {
			dump.Process.Kill()
			dump.Wait()
		}
	})
	waitFor(t, "uranus to attach", func() string {
		if strings.Contains(dumpErr.String(), attached) {
			return ""
		}
		return "stderr so far: " + dumpErr.String()
	})
	if !strings.Contains(dumpErr.String(), warning) {
		t.Errorf("uranus gave no warning about the key log:\n%s", dumpErr.String())
	}
	checkMode(t, keys)

	pcap := filepath.Join(dir, "capture.pcap")
	capture := exec.Command("tshark", "-i", "lo", "-w", pcap, "-f", "tcp port "+port)
	var capErr lockedBuffer
	capture.Stderr = &capErr
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if capture.ProcessState == nil {
			capture.Process.Kill()
			capture.Wait()
		}
	})
	waitFor(t, "tshark to capture", func() string {
		if strings.Contains(capErr.String(), "Capture started") { // "Capturing on" comes before it is
			return ""
		}
		return "stderr so far: " + capErr.String()
	})

	// The test's own connection: the app is its server. Its crypto/tls
	// logs the secrets it derives, for comparison.
	var own bytes.Buffer
	conn, err := tls.Dial("tcp", app.Addr, &tls.Config{
		InsecureSkipVerify: true, ServerName: "localhost",
		MinVersion: tlsVer, MaxVersion: tlsVer, KeyLogWriter: &own,
	})
	if err != nil {
		t.Fatal(err)
	}
	inner := "/fetch?" + url.Values{"url": {"https://" + app.Addr + "/state"}, "host": {"localhost"}}.Encode()
	wantVer := "version=0304"
	if tlsVer == tls.VersionTLS12 {
		inner += "&maxver=12"
		wantVer = "version=0303"
	}
	io.WriteString(conn, "GET "+inner+" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	reply, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.HasPrefix(reply, []byte("HTTP/1.1 200 OK\r\n")) || bytes.Count(reply, []byte(wantVer)) != 2 {
		t.Fatalf("app replied (want 200 and %s on both sides of its fetch):\n%s", wantVer, reply)
	}

	// Every secret the test's side logged, and those of the app's fetch.
	wantLabels := []string{"CLIENT_RANDOM"}
	if tlsVer == tls.VersionTLS13 {
		wantLabels = []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"}
	}
	ownLines := strings.Split(strings.TrimSpace(own.String()), "\n")
	if len(ownLines) != len(wantLabels) {
		t.Fatalf("the test's crypto/tls logged %d secrets, want %d:\n%s", len(ownLines), len(wantLabels), own.String())
	}
	var lines []string
	waitFor(t, "the key log to hold both connections' secrets", func() string {
		b, err := os.ReadFile(keys)
		if err != nil {
			return err.Error()
		}
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		have := map[string]bool{}
		randoms := map[string]bool{}
		for _, l := range lines {
			have[l] = true
			if m := keyLogLine.FindStringSubmatch(l); m != nil {
				randoms[m[2]] = true
			}
		}
		for _, l := range ownLines {
			if !have[l] {
				return fmt.Sprintf("lacks %q; has:\n%s", l, b)
			}
		}
		// The app's fetch: logged by its client and its server side.
		if len(randoms) < 2 || len(lines) < 2*len(wantLabels)+len(ownLines) {
			return fmt.Sprintf("%d lines of %d client randoms:\n%s", len(lines), len(randoms), b)
		}
		return ""
	})
	for _, l := range lines {
		m := keyLogLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("key log line %q is not LABEL <client random hex> <secret hex>", l)
			continue
		}
		found := false
		for _, w := range wantLabels {
			found = found || m[1] == w
		}
		if !found {
			t.Errorf("key log line %q: label %s, want one of %v", l, m[1], wantLabels)
		}
	}
	if !sidecar && !strings.Contains(dumpOut.String(), " keylog "+wantLabels[0]+" client_random ") {
		t.Errorf("tls-dump printed no keylog line:\n%s", dumpOut.String())
	}
	if tapped := strings.Contains(dumpOut.String(), " read "); !sidecar && tapped != plaintext {
		t.Errorf("tls-dump printed plaintext reads: %v, want %v:\n%s", tapped, plaintext, dumpOut.String())
	}
	if sidecar && (strings.Contains(dumpErr.String(), "records that could not be decoded") || strings.Contains(dumpErr.String(), "SECRET")) {
		t.Errorf("the sidecar logged the key log's records as bad, or a secret:\n%s", dumpErr.String())
	}

	// Stop the capture once it holds all of the traffic: the kernel hands
	// packets to the capture in blocks, and those not handed over yet are
	// lost when it stops. A last connection marks the end: once its SYN is
	// in the file, all that came before is too.
	marker, err := net.Dial("tcp", app.Addr)
	if err != nil {
		t.Fatal(err)
	}
	markerPort := marker.LocalAddr().(*net.TCPAddr).Port
	marker.Close()
	waitFor(t, "the capture to hold the marker connection", func() string {
		out, _ := exec.Command("tshark", "-r", pcap, "-Y", fmt.Sprintf("tcp.srcport==%d && tcp.flags.syn==1", markerPort), "-T", "fields", "-e", "frame.number").Output()
		if len(bytes.TrimSpace(out)) == 0 {
			return "not yet"
		}
		return ""
	})
	capture.Process.Signal(syscall.SIGTERM)
	if err := capture.Wait(); err != nil {
		t.Fatalf("tshark: %v\n%s", err, capErr.String())
	}
	requests := func(keyFile string) string {
		args := []string{"-r", pcap, "-d", "tcp.port==" + port + ",tls"}
		if keyFile != "" {
			args = append(args, "-o", "tls.keylog_file:"+keyFile)
		}
		args = append(args, "-Y", "http.request", "-T", "fields", "-e", "http.request.method", "-e", "http.request.uri", "-e", "http.request.version")
		out, err := exec.Command("tshark", args...).Output()
		if err != nil {
			t.Fatalf("tshark %q: %v", args, err)
		}
		return string(out)
	}
	decrypted := requests(keys)
	for _, want := range []string{"GET\t" + inner + "\tHTTP/1.1\n", "GET\t/state\tHTTP/1.1\n"} {
		if !strings.Contains(decrypted, want) {
			summary, _ := exec.Command("tshark", "-r", pcap, "-d", "tcp.port=="+port+",tls", "-o", "tls.keylog_file:"+keys).CombinedOutput()
			fi, _ := os.Stat(pcap)
			t.Errorf("tshark with the key log lacks the request %q; it found:\n%s\nthe capture (%d bytes):\n%s\ncapturing tshark said:\n%s", want, decrypted, fi.Size(), summary, capErr.String())
		}
	}
	if plain := requests(""); plain != "" {
		t.Errorf("tshark found HTTP requests without the key log:\n%s", plain)
	}
	t.Logf("tshark -o tls.keylog_file:%s found:\n%skey log:\n%s", filepath.Base(keys), decrypted, strings.Join(lines, "\n"))

	dump.Process.Signal(syscall.SIGTERM)
	if err := dump.Wait(); err != nil {
		t.Errorf("tls-dump exited with %v after SIGTERM; stderr:\n%s", err, dumpErr.String())
	}
	checkMode(t, keys)
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", path, fi.Mode().Perm())
	}
}

// waitFor polls cond, which returns "" when satisfied or what it saw, for
// up to a minute.
func waitFor(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := cond()
		if seen == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireTshark stops the test unless eBPF and tshark are there; in CI
// their absence fails it.
func requireTshark(t *testing.T) {
	t.Helper()
	e2e.RequireBPF(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tshark is required in CI: %v", err)
		}
		t.Skip("skipping: tshark is not installed")
	}
}

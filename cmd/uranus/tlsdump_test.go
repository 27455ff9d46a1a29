package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/internal/e2e"
	"github.com/uranus-otel/uranus/internal/testapp"
)

func TestTLSDumpBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no target: pass --exe PATH|NAME or --pid N"},
		{[]string{"--pid", "1", "--bytes", "0"}, `--bytes "0": give a count from 1 to 4096`},
		{[]string{"--pid", "1", "--bytes", "5000"}, `--bytes "5000": give a count from 1 to 4096`},
		{[]string{"--pid", "1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--exe", "x", "--pid", "1"}, "--exe and --pid both given"},
	} {
		var out, errb bytes.Buffer
		if code := tlsDumpMain(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("tls-dump %q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := tlsDumpMain([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "uranus tls-dump --exe PATH|NAME") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
}

func TestPrintable(t *testing.T) {
	got := printable([]byte("GET / HTTP/1.1\r\nX: \"q\"\t\\\x00\xff"))
	want := `GET / HTTP/1.1\r\nX: \"q\"\t\\..`
	if got != want {
		t.Errorf("printable: %s, want %s", got, want)
	}
}

// TestTLSDump runs the command against tlsapp and a client in this test:
// the handshake, the request the app read and the reply it wrote appear,
// numbered by connection, with the plaintext cut at --bytes.
func TestTLSDump(t *testing.T) {
	e2e.RequireBPF(t)
	dir := t.TempDir()
	cert, err := selfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	app := e2e.Start(t, e2e.BuildTarget(t, "tlsapp", "1.27.4", testapp.Options{}), "-cert", certFile, "-key", keyFile, "-ca", certFile)

	cmd := exec.Command(uranusBin, "tls-dump", "--pid", fmt.Sprint(app.Cmd.Process.Pid), "--bytes", "40")
	var out lockedBuffer
	cmd.Stdout = &out
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	watching := make(chan struct{})
	var errLog lockedBuffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errLog.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "watching pid") {
				close(watching)
			}
		}
	}()
	select {
	case <-watching:
	case <-time.After(60 * time.Second):
		t.Fatalf("tls-dump did not attach:\n%s", errLog.String())
	}

	conn, err := tls.Dial("tcp", app.Addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	request := "GET /state HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tls-dump-test\r\n\r\n"
	io.WriteString(conn, request)
	reply, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if reply != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("app replied %q", reply)
	}

	pid := fmt.Sprint(app.Cmd.Process.Pid)
	want := []string{
		"pid " + pid + " conn#1 handshake server peer 127.0.0.1:",
		" TLS 1.3 TLS_",
		" sni=localhost",
		fmt.Sprintf("pid %s conn#1 read  %5d B (in %d, out 0) \"%s…\"", pid, len(request), len(request), printable([]byte(request[:40]))),
		fmt.Sprintf("pid %s conn#1 write ", pid),
		`"HTTP/1.1 200 OK\r\n`,
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing := ""
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tls-dump output lacks %q:\n%s\nstderr:\n%s", missing, out.String(), errLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("tls-dump output:\n%s", out.String())
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("tls-dump exited with %v after SIGTERM; stderr:\n%s", err, errLog.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

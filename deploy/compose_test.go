package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uranus-otel/uranus/internal/jaeger"
)

// requireDocker returns how to run compose here ("docker compose" or
// "docker-compose"). Without an engine the test skips, except in CI, whose
// machine has one.
func requireDocker(t *testing.T) []string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the compose demo must be tested in CI: %s", why)
		}
		t.Skipf("skipping: %s", why)
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing(fmt.Sprintf("no Docker engine (docker info: %v %s)", err, strings.TrimSpace(string(out))))
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	missing("neither `docker compose` nor docker-compose is installed")
	return nil
}

// TestComposeDemo builds the demo's images from static binaries, brings the
// compose demo up with the local Jaeger override, sends requests to the
// shop, and reads the traces of all three services back from Jaeger. The
// sidecars run with only CAP_SYS_ADMIN, so this also proves that set enough;
// a sidecar without it must fail. Everything it creates is removed.
func TestComposeDemo(t *testing.T) {
	compose := requireDocker(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// Jaeger first: the only slow part, cached after the first build.
	if _, err := jaeger.Build(t.Logf); err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("uranus-test-%d", os.Getpid())
	ports := freePorts(t, 2)
	env := append(os.Environ(),
		"URANUS_IMAGE="+id+"-uranus:test",
		"URANUS_DEMO_IMAGE="+id+"-demo:test",
		"JAEGER_IMAGE="+id+"-jaeger:test",
		"SHOP_PORT="+ports[0],
		"JAEGER_UI_PORT="+ports[1],
	)
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = repo, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	composeArgs := func(args ...string) []string {
		return append(append(compose[1:], "-p", id, "-f", "docker-compose.yaml", "-f", "docker-compose.local.yaml"), args...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run(compose[0], composeArgs("logs", "--no-color", "--tail", "40")...)
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := run(compose[0], composeArgs("down", "--volumes", "--remove-orphans", "-t", "5")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		for _, img := range []string{"-uranus:test", "-demo:test", "-jaeger:test"} {
			run("docker", "rmi", "-f", id+img)
		}
	})

	start := time.Now()
	if out, err := run("bash", "deploy/docker/build.sh", "--jaeger"); err != nil {
		t.Fatalf("deploy/docker/build.sh: %v\n%s", err, out)
	}
	t.Logf("images built in %s", time.Since(start).Round(time.Millisecond))
	if out, err := run(compose[0], composeArgs("up", "-d")...); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	t.Logf("compose up after %s", time.Since(start).Round(time.Millisecond))

	// Each sidecar logs "attached" once it has probed its service.
	for _, svc := range []string{"uranus-shop", "uranus-stock", "uranus-payments"} {
		waitFor(t, fmt.Sprintf("%s attached", svc), func() bool {
			out, _ := run(compose[0], composeArgs("logs", "--no-color", svc)...)
			return strings.Contains(out, "msg=attached")
		})
	}

	shop := "http://127.0.0.1:" + ports[0]
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		for _, p := range []string{"/products/7", "/checkout?sku=7", "/fail"} {
			resp, err := client.Get(shop + p)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	query := "http://127.0.0.1:" + ports[1]
	want := map[string]string{"shop": "GET /checkout", "stock": "GET /stock/{sku}", "payments": "POST /pay"}
	for svc, op := range want {
		traces, err := jaeger.WaitTraces(query, svc, func(ts []jaeger.Trace) bool { return hasSpan(ts, op) })
		if err != nil {
			t.Fatalf("%s: no %q span in Jaeger: %v (%d traces)", svc, op, err, len(traces))
		}
		for _, tr := range traces {
			for _, s := range tr.Spans {
				if s.OperationName != op {
					continue
				}
				if code, _ := jaeger.Tag(s.Tags, "http.response.status_code"); code != "200" {
					t.Errorf("%s %s: status %q", svc, op, code)
				}
				p := tr.Processes[s.ProcessID]
				if exe, _ := jaeger.Tag(p.Tags, "process.executable.path"); p.ServiceName != svc || exe != "/"+svc {
					t.Errorf("%s span from service %q, executable %q", op, p.ServiceName, exe)
				}
			}
		}
	}

	// Trace context crossed from shop to stock on the wire (a header; over
	// gRPC, a field added to the call's HEADERS frame) and from shop to
	// payments (HTTPS: a TCP option, read by payments' sidecar): the
	// sidecars mounted the cgroup v2 hierarchy they could not see and
	// attached there.
	for _, hop := range []struct{ svc, op string }{{"stock", "GET /stock/{sku}"}, {"payments", "POST /pay"}, {"stock", "uranus.demo.Stock/Reserve"}} {
		traces, err := jaeger.WaitTraces(query, "shop", func(ts []jaeger.Trace) bool { return joined(ts, hop.svc, hop.op) })
		if err != nil {
			t.Errorf("no shop trace holds a %s %s server span under a shop client span: %v (%d traces)", hop.svc, hop.op, err, len(traces))
			for _, c := range []string{"uranus-shop", "uranus-" + hop.svc} {
				out, _ := run(compose[0], composeArgs("logs", "--no-color", c)...)
				t.Logf("%s's log:\n%s", c, out)
			}
		}
	}

	// The experiment behind the capability choice, repeated: without
	// CAP_SYS_ADMIN uranus cannot load BPF or attach uprobes.
	ctr, err := run(compose[0], composeArgs("ps", "-q", "stock")...)
	if err != nil {
		t.Fatalf("compose ps: %v\n%s", err, ctr)
	}
	out, err := run("docker", "run", "--rm", "--pid", "container:"+strings.TrimSpace(ctr), "--cap-drop", "ALL",
		id+"-uranus:test", "--pid", "1")
	if err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("uranus without CAP_SYS_ADMIN: %v, want a permission error:\n%s", err, out)
	}
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}

func hasSpan(traces []jaeger.Trace, op string) bool {
	for _, tr := range traces {
		for _, s := range tr.Spans {
			if s.OperationName == op {
				return true
			}
		}
	}
	return false
}

// joined tells whether a trace holds a span op of service svc whose parent
// is a shop client span.
func joined(traces []jaeger.Trace, svc, op string) bool {
	for _, tr := range traces {
		clients := map[string]bool{}
		for _, s := range tr.Spans {
			if kind, _ := jaeger.Tag(s.Tags, "span.kind"); kind == "client" && tr.Processes[s.ProcessID].ServiceName == "shop" {
				clients[s.SpanID] = true
			}
		}
		for _, s := range tr.Spans {
			if s.OperationName == op && tr.Processes[s.ProcessID].ServiceName == svc && clients[s.Parent()] {
				return true
			}
		}
	}
	return false
}

// waitFor polls cond; the bound only guards against a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: gave up after 90s", what)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/otel"
	"github.com/uranus-otel/uranus/target"
)

// The demo needs no compiler and no collector: the uranus binary is itself a
// Go program with net/http in it, so copies of it named "shop" and "stock"
// serve as the demo's services (the hidden demo-app mode), uranus attaches
// to them like to any other target, and the console draws the traces.

func demoMain(args []string) int {
	fs := flag.NewFlagSet("uranus demo", flag.ContinueOnError)
	requests := fs.Int("requests", 12, "how many requests to send to the demo shop")
	keep := fs.Bool("keep-running", false, "keep the demo services and uranus running after the requests (Ctrl-C stops)")
	logLevel := fs.String("log-level", "warn", "log `level` for uranus itself")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, `uranus demo — see uranus trace a running Go service, in one command

Starts two small Go services (shop, and stock which shop calls over HTTP and gRPC), attaches
uranus to them, sends a few requests and draws each trace in the terminal.
Needs root (BPF). OTEL_EXPORTER_OTLP_ENDPOINT, when set, also receives the spans.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log, err := newLogger(*logLevel, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uranus demo:", err)
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := demo(ctx, log, *requests, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "uranus demo:", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, log *slog.Logger, requests int, keep bool) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable to copy as the demo services: %w", err)
	}
	dir, err := os.MkdirTemp("", "uranus-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var exes []string
	for _, name := range []string{"stock", "shop"} {
		p := filepath.Join(dir, name)
		if err := copyFile(self, p); err != nil {
			return fmt.Errorf("copying %s to %s: %w", self, p, err)
		}
		exes = append(exes, p)
	}
	stock, stockAddr, stockGRPC, err := startService(exes[0], "--role", "stock", "--stock-grpc", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer stopService(stock)
	shop, shopAddr, _, err := startService(exes[1], "--role", "shop", "--stock", "http://"+stockAddr, "--stock-grpc", stockGRPC)
	if err != nil {
		return err
	}
	defer stopService(shop)
	fmt.Printf("uranus demo: shop (pid %d) on %s calls stock (pid %d) on %s\n", shop.Process.Pid, shopAddr, stock.Process.Pid, stockAddr)

	exporters := []string{"console"}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exporters = append(exporters, "otlp")
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	attached := 0
	sent := make(chan int, 1)
	cfg := runConfig{
		matcher:  target.Matcher{Exes: exes},
		pipeline: otel.Config{Exporters: exporters, ConsoleLinger: 700 * time.Millisecond},
		log:      log,
		onAttach: func(t *attach.Target) {
			mu.Lock()
			defer mu.Unlock()
			attached++
			if attached == len(exes) {
				fmt.Printf("uranus demo: attached to both; sending %d requests…\n\n", requests)
				go func() {
					n := drive(runCtx, "http://"+shopAddr, requests)
					sent <- n
				}()
			}
		},
	}
	go func() {
		select {
		case n := <-sent:
			time.Sleep(1500 * time.Millisecond) // let the console draw the last traces
			if !keep {
				fmt.Printf("uranus demo: sent %d requests. Instrument your own program with: uranus --exe /path/to/app\n", n)
				stop()
			}
		case <-runCtx.Done():
		}
	}()
	return run(runCtx, cfg)
}

// drive sends n requests to the shop, a mix of pages, checkouts (which call
// stock) and failures, and returns how many it sent.
func drive(ctx context.Context, base string, n int) int {
	paths := []string{"/products/7", "/checkout?sku=7", "/products/42", "/checkout?sku=42", "/slow", "/fail"}
	c := &http.Client{Timeout: 5 * time.Second}
	sent := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		resp, err := c.Get(base + paths[i%len(paths)])
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		sent++
		time.Sleep(150 * time.Millisecond)
	}
	return sent
}

// startService starts a demo service and returns its HTTP address and,
// for stock, its gRPC address.
func startService(path string, args ...string) (cmd *exec.Cmd, addr, grpcAddr string, err error) {
	cmd = exec.Command(path, append([]string{"demo-app"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", "", fmt.Errorf("starting demo service %s: %w", path, err)
	}
	// "grpc on ADDR" (stock's gRPC listener) may come first.
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if g, ok := strings.CutPrefix(strings.TrimSpace(line), "grpc on "); ok && err == nil {
		grpcAddr = g
		line, err = rd.ReadString('\n')
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", "", fmt.Errorf("demo service %s did not start: %q %v", path, line, err)
	}
	return cmd, addr, grpcAddr, nil
}

func stopService(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// demoAppMain is one of the demo's services (hidden subcommand demo-app).
func demoAppMain(args []string) int {
	fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
	role := fs.String("role", "shop", "shop, stock or payments")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	stockURL := fs.String("stock", "", "stock service base URL (shop only)")
	stockGRPC := fs.String("stock-grpc", "", "stock service's gRPC address, host:port (shop: where to reserve; stock: where to listen; optional)")
	paymentsURL := fs.String("payments", "", "payments service base URL, https (shop only; optional)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	mux := http.NewServeMux()
	serveTLS := false
	switch *role {
	case "payments":
		// Served over HTTPS, so the compose demo has a TLS hop.
		serveTLS = true
		mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(3+rand.Intn(5)) * time.Millisecond)
			fmt.Fprintln(w, `{"paid":true}`)
		})
	case "stock":
		if *stockGRPC != "" {
			gln, err := net.Listen("tcp", *stockGRPC)
			if err != nil {
				fmt.Fprintln(os.Stderr, "demo-app:", err)
				return 1
			}
			fmt.Printf("grpc on %s\n", gln.Addr())
			ctx, cancel := signalContext()
			defer cancel()
			go serveStockGRPC(ctx, gln)
		}
		mux.HandleFunc("GET /stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(1+rand.Intn(4)) * time.Millisecond)
			fmt.Fprintf(w, `{"sku":%q,"available":%d}`+"\n", r.PathValue("sku"), rand.Intn(20))
		})
	case "shop":
		reserver := &stockClient{target: *stockGRPC}
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			// payments makes its certificate up at start: nothing to verify it against.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}}
		mux.HandleFunc("GET /products/{id}", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(2+rand.Intn(3)) * time.Millisecond)
			fmt.Fprintf(w, "product %s\n", r.PathValue("id"))
		})
		mux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) {
			resp, err := client.Get(*stockURL + "/stock/" + r.URL.Query().Get("sku"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if *stockGRPC != "" {
				if err := reserver.reserve(r.Context(), r.URL.Query().Get("sku")); err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
			}
			if *paymentsURL != "" {
				resp, err := client.Post(*paymentsURL+"/pay", "application/json", strings.NewReader(fmt.Sprintf(`{"sku":%q}`, r.URL.Query().Get("sku"))))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			fmt.Fprintln(w, "order placed")
		})
		mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(40 * time.Millisecond)
			fmt.Fprintln(w, "finally")
		})
		mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the payment backend is down", http.StatusInternalServerError)
		})
	default:
		fmt.Fprintf(os.Stderr, "demo-app: unknown role %q\n", *role)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-app:", err)
		return 1
	}
	srv := &http.Server{Handler: mux}
	if serveTLS {
		cert, err := selfSignedCert()
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo-app:", err)
			return 1
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	ctx, cancel := signalContext()
	defer cancel()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "demo-app:", err)
		return 1
	}
	return 0
}

// selfSignedCert makes a throwaway certificate for the payments service.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "payments"},
		DNSNames:     []string{"payments", "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Command server is the HTTP server the benchmark (bench/) loads: one small
// handler behind a ServeMux. Built plain it links no OpenTelemetry code, so
// tools that probe OTel's own API (go.opentelemetry.io/auto does) find
// nothing to attach there; built with -tags otel, its -otel flag wraps the
// mux in otelhttp and exports with the OpenTelemetry SDK (OTLP over HTTP,
// configured by the standard OTEL_* variables), which is what a user who
// instruments by hand would run.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

// instrument, set by otel.go under -tags otel, wraps the handler and returns
// a function that flushes every span.
var instrument func(http.Handler) (http.Handler, func() error, error)

var body = []byte("hello\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	withOTel := flag.Bool("otel", false, "instrument in-process with otelhttp and the OTel SDK (a -tags otel build)")
	downstream := flag.String("downstream", "", "GET this `URL` once per request before answering, as a service calling another does")
	flag.Parse()
	if err := serve(*addr, *withOTel, *downstream); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func serve(addr string, withOTel bool, downstream string) error {
	mux := http.NewServeMux()
	// Keep-alive connections to the downstream, one per load connection.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		if downstream != "" {
			resp, err := client.Get(downstream)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		w.Write(body)
	})
	var handler http.Handler = mux
	flush := func() error { return nil }
	if withOTel {
		if instrument == nil {
			return fmt.Errorf("-otel needs a build with -tags otel")
		}
		var err error
		if handler, flush, err = instrument(mux); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: handler}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	// Every span must reach the sink before exit: the benchmark compares
	// spans received with requests sent.
	return flush()
}

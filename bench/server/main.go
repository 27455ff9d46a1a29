// Command server is the HTTP server the benchmark (bench/) loads: one small
// handler behind a ServeMux, the same binary in every configuration. With
// -otel it wraps the mux in otelhttp and exports with the OpenTelemetry SDK
// (OTLP over HTTP, configured by the standard OTEL_* variables), which is
// what a user who instruments by hand would run.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

var body = []byte("hello\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	withOTel := flag.Bool("otel", false, "instrument in-process with otelhttp and the OTel SDK")
	flag.Parse()
	if err := serve(*addr, *withOTel); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func serve(addr string, withOTel bool) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})
	var handler http.Handler = mux
	var provider *sdktrace.TracerProvider
	if withOTel {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return fmt.Errorf("creating the OTLP exporter: %w", err)
		}
		// The batch settings uranus's pipeline uses (otel/pipeline.go), so
		// that both configurations differ only in how spans are captured.
		provider = sdktrace.NewTracerProvider(
			sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("bench-server"))),
			sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(exp,
				sdktrace.WithMaxQueueSize(4096),
				sdktrace.WithBlocking(),
				sdktrace.WithBatchTimeout(time.Second))))
		handler = otelhttp.NewHandler(mux, "server", otelhttp.WithTracerProvider(provider))
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
	if provider != nil {
		// Every span must reach the sink before exit: the benchmark compares
		// spans received with requests sent.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := provider.Shutdown(ctx); err != nil {
			return fmt.Errorf("flushing spans: %w", err)
		}
	}
	return nil
}

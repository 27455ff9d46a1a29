//go:build otel

package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func init() {
	instrument = func(h http.Handler) (http.Handler, func() error, error) {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return nil, nil, fmt.Errorf("creating the OTLP exporter: %w", err)
		}
		// The batch settings uranus's pipeline uses (otel/pipeline.go), so
		// that both configurations differ only in how spans are captured.
		provider := sdktrace.NewTracerProvider(
			sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("bench-server"))),
			sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(exp,
				sdktrace.WithMaxQueueSize(4096),
				sdktrace.WithBlocking(),
				sdktrace.WithBatchTimeout(time.Second))))
		flush := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := provider.Shutdown(ctx); err != nil {
				return fmt.Errorf("flushing spans: %w", err)
			}
			return nil
		}
		return otelhttp.NewHandler(h, "server", otelhttp.WithTracerProvider(provider)), flush, nil
	}
}

package selfmetrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	api "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/uranus-otel/uranus/otel"
)

// Start exposes src: as Prometheus text at http://addr/metrics when addr is
// set (or OTEL_METRICS_EXPORTER=prometheus, on OTEL_EXPORTER_PROMETHEUS_HOST
// and _PORT), and as OTLP metrics when OTEL_METRICS_EXPORTER=otlp, every
// OTEL_METRIC_EXPORT_INTERVAL (default 60 s) to the OTLP endpoint. stop
// sends the last OTLP export and closes the endpoint.
func Start(ctx context.Context, addr string, src Source, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	exporters, err := exportersFromEnv()
	if err != nil {
		return nil, err
	}
	if exporters["prometheus"] && addr == "" {
		addr = net.JoinHostPort(envOr("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost"), envOr("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
	}
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
		}
		srv := &http.Server{Handler: Handler(src), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		log.Info("serving self-metrics", "url", "http://"+ln.Addr().String()+"/metrics")
		stops = append(stops, func() { srv.Close() })
	}
	if exporters["otlp"] {
		shutdown, where, err := startOTLP(ctx, src)
		if err != nil {
			stop()
			return nil, err
		}
		log.Info("exporting self-metrics", "to", where)
		stops = append(stops, shutdown)
	}
	return stop, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// exportersFromEnv reads OTEL_METRICS_EXPORTER. Unset means none: uranus's
// product is traces, and a collector set up for them may refuse metrics.
func exportersFromEnv() (map[string]bool, error) {
	out := map[string]bool{}
	for _, name := range strings.Split(os.Getenv("OTEL_METRICS_EXPORTER"), ",") {
		switch name = strings.TrimSpace(name); name {
		case "", "none":
		case "otlp", "prometheus":
			out[name] = true
		default:
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER: unknown exporter %q for uranus's own metrics (use otlp, prometheus or none)", name)
		}
	}
	return out, nil
}

// Handler serves src in the Prometheus text exposition format.
func Handler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.Error(w, "uranus serves its metrics at /metrics", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteText(w, src())
	})
}

// WriteText writes s in the Prometheus text exposition format.
func WriteText(w io.Writer, s Snapshot) error {
	var b strings.Builder
	for _, m := range metrics {
		kind := "gauge"
		if m.counter {
			kind = "counter"
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.promName, m.help, m.promName, kind)
		for _, p := range m.points(s) {
			if p.key == "" {
				fmt.Fprintf(&b, "%s %d\n", m.promName, p.n)
			} else {
				fmt.Fprintf(&b, "%s{%s=%q} %d\n", m.promName, p.key, p.value, p.n)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// startOTLP registers every metric as an observable instrument of a meter
// provider that exports over OTLP, configured by the standard
// OTEL_EXPORTER_OTLP_* variables.
func startOTLP(ctx context.Context, src Source) (stop func(), where string, err error) {
	proto := envOr("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	var exp sdkmetric.Exporter
	switch proto {
	case "", "http/protobuf":
		exp, err = otlpmetrichttp.New(ctx)
		where = "otlp http/protobuf " + envOr("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", envOr("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"))
	case "grpc":
		exp, err = otlpmetricgrpc.New(ctx)
		where = "otlp grpc " + envOr("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", envOr("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317"))
	default:
		return nil, "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported (use grpc or http/protobuf)", proto)
	}
	if err != nil {
		return nil, "", fmt.Errorf("creating the OTLP metrics exporter: %w (check OTEL_EXPORTER_OTLP_ENDPOINT)", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			semconv.ServiceName("uranus"),
			semconv.ProcessPID(os.Getpid()),
			semconv.TelemetryDistroName("uranus"),
			semconv.TelemetryDistroVersion(otel.Version)),
		resource.WithHost())
	if err != nil && res == nil {
		return nil, "", err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mp.Shutdown(ctx) // collects and exports once more
	}
	if err := register(mp.Meter("github.com/uranus-otel/uranus/selfmetrics"), src); err != nil {
		stop()
		return nil, "", err
	}
	return stop, where, nil
}

// register creates an observable instrument per metric and one callback
// that takes a single Snapshot per collection for all of them.
func register(meter api.Meter, src Source) error {
	insts := make([]api.Observable, len(metrics))
	var errs []error
	for i, m := range metrics {
		var err error
		if m.counter {
			insts[i], err = meter.Int64ObservableCounter(m.otelName, api.WithDescription(m.help), api.WithUnit(m.unit))
		} else {
			insts[i], err = meter.Int64ObservableGauge(m.otelName, api.WithDescription(m.help), api.WithUnit(m.unit))
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o api.Observer) error {
		s := src()
		for i, m := range metrics {
			for _, p := range m.points(s) {
				var opts []api.ObserveOption
				if p.key != "" {
					opts = append(opts, api.WithAttributes(attribute.String(p.key, p.value)))
				}
				switch inst := insts[i].(type) {
				case api.Int64ObservableCounter:
					o.ObserveInt64(inst, int64(p.n), opts...)
				case api.Int64ObservableGauge:
					o.ObserveInt64(inst, int64(p.n), opts...)
				}
			}
		}
		return nil
	}, insts...)
	return err
}

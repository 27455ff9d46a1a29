package otel

import (
	"strings"
	"testing"
)

func TestCheckOTLPEnv(t *testing.T) {
	cert := "otlpenv_test.go" // any readable file
	for _, c := range []struct {
		env  map[string]string
		want string // "" when the environment is fine
	}{
		{nil, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example/v1/traces"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "::garbage"}, `OTEL_EXPORTER_OTLP_ENDPOINT="::garbage": not a URL`},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "must start with http:// or https://"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://"}, "names no host"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"}, `port "99999"`},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5000"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=\"10s\": a timeout is a positive number of milliseconds"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=secret,tenant=a%20b"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key"}, "key=value pairs"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=%zz"}, "not URL-encoded"},
		{map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "gzip or none"},
		{map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "yes"}, "true or false"},
		{map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": cert}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/no/such/key.pem"}, "cannot read the file"},
	} {
		err := checkOTLPEnv(func(k string) string { return c.env[k] })
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v, want one containing %q", c.env, err, c.want)
		}
	}
}

package otel

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// checkOTLPEnv checks the OTEL_EXPORTER_OTLP_* variables the exporters will
// read, so that a bad value stops uranus at start with one line naming the
// variable and the fix. The SDK itself only logs such values (its "parse
// url" error) and exports nowhere, while uranus would say it started.
// getenv is os.Getenv outside tests.
func checkOTLPEnv(getenv func(string) string) error {
	// Each setting has a general variable and a traces-only one, which
	// wins; both are checked, since a user who set one means it.
	for _, setting := range []struct {
		suffix string
		check  func(string) error
	}{
		{"ENDPOINT", checkEndpoint},
		{"TIMEOUT", checkTimeout},
		{"HEADERS", checkHeaders},
		{"COMPRESSION", checkCompression},
		{"INSECURE", checkBool},
		{"CERTIFICATE", checkFile},
		{"CLIENT_CERTIFICATE", checkFile},
		{"CLIENT_KEY", checkFile},
	} {
		for _, name := range []string{"OTEL_EXPORTER_OTLP_" + setting.suffix, "OTEL_EXPORTER_OTLP_TRACES_" + setting.suffix} {
			v := getenv(name)
			if v == "" {
				continue
			}
			if err := setting.check(v); err != nil {
				return fmt.Errorf("%s=%q: %v", name, v, err)
			}
		}
	}
	return nil
}

func checkEndpoint(v string) error {
	const fix = "give the collector's URL, e.g. http://localhost:4318 (http/protobuf) or http://localhost:4317 (grpc)"
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("not a URL (%v); %s", err, fix)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("the URL must start with http:// or https://; %s", fix)
	}
	if u.Host == "" {
		return fmt.Errorf("the URL names no host; %s", fix)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a port number; %s", p, fix)
		}
	}
	return nil
}

func checkTimeout(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		return fmt.Errorf("a timeout is a positive number of milliseconds, e.g. 10000")
	}
	return nil
}

func checkHeaders(v string) error {
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("headers are key=value pairs separated by commas, e.g. api-key=secret,tenant=a; %q is not one", kv)
		}
		if _, err := url.PathUnescape(val); err != nil {
			return fmt.Errorf("the value of %s is not URL-encoded correctly (%v)", strings.TrimSpace(k), err)
		}
	}
	return nil
}

func checkCompression(v string) error {
	if v != "gzip" && v != "none" {
		return fmt.Errorf("compression is gzip or none")
	}
	return nil
}

func checkBool(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return fmt.Errorf("give true or false")
	}
	return nil
}

func checkFile(v string) error {
	f, err := os.Open(v)
	if err != nil {
		return fmt.Errorf("cannot read the file: %v", err)
	}
	return f.Close()
}

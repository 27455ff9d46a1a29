package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	version "github.com/hashicorp/go-version"
)

// release is one Go release the module proxy has a toolchain for.
type release struct {
	name   string           // toolchain name: "go1.16.15", or "go1.20" for 1.20.0
	v      *version.Version // 1.16.15, 1.20.0
	minor  int
	latest bool // the newest patch of its minor series in the proxy
}

// listReleases asks the module proxy which toolchains it has for goarch,
// grouped by minor version and sorted. Pre-releases are left out: they are
// never checked, so never covered.
func listReleases(goarch string) (map[int][]release, error) {
	vs, err := listToolchainVersions()
	if err != nil {
		return nil, err
	}
	return parseReleases(vs, goarch), nil
}

// listToolchainVersions returns the module versions of golang.org/toolchain
// ("v0.0.1-go1.16.15.linux-amd64", …) that the module proxy lists. It asks
// through the host's go command, so GOPROXY, GONOPROXY, GOPRIVATE and the
// proxy's credentials apply exactly as for a toolchain download; the go
// command fetches only $GOPROXY/golang.org/toolchain/@v/list for it.
func listToolchainVersions() ([]string, error) {
	dir, err := os.MkdirTemp("", "uranus-offsets-list-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-json", "-versions", "golang.org/toolchain")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		cause := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(bytes.TrimSpace(ee.Stderr)) > 0 {
			cause = strings.Join(strings.Fields(string(ee.Stderr)), " ")
		}
		if ctx.Err() != nil {
			cause = "no answer within 2 minutes"
		}
		return nil, fmt.Errorf("cannot list golang.org/toolchain versions through the module proxy (GOPROXY=%s): %s; make the proxy reachable, or point GOPROXY at one that is (e.g. GOPROXY=https://proxy.golang.org)", goEnv("GOPROXY"), cause)
	}
	var mod struct{ Versions []string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return nil, fmt.Errorf("listing golang.org/toolchain versions: reading `go list` output: %v", err)
	}
	return mod.Versions, nil
}

// goEnv is the go command's value of an environment setting (which may come
// from its env file rather than the environment), for error messages.
func goEnv(key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return os.Getenv(key)
	}
	return strings.TrimSpace(string(out))
}

// parseReleases picks the release toolchains of goarch out of the module
// versions of golang.org/toolchain ("v0.0.1-go1.16.15.linux-amd64").
func parseReleases(modVersions []string, goarch string) map[int][]release {
	re := regexp.MustCompile(`^v0\.0\.1-(go1\.(\d+)(?:\.(\d+))?)\.linux-` + regexp.QuoteMeta(goarch) + `$`)
	byMinor := make(map[int][]release)
	seen := make(map[string]bool)
	for _, mv := range modVersions {
		m := re.FindStringSubmatch(mv)
		if m == nil {
			continue
		}
		minor, _ := strconv.Atoi(m[2])
		patch := 0
		if m[3] != "" {
			patch, _ = strconv.Atoi(m[3])
		}
		v := version.Must(version.NewVersion(fmt.Sprintf("1.%d.%d", minor, patch)))
		if seen[v.String()] {
			continue
		}
		seen[v.String()] = true
		byMinor[minor] = append(byMinor[minor], release{name: m[1], v: v, minor: minor})
	}
	for _, rs := range byMinor {
		sort.Slice(rs, func(i, j int) bool { return rs[i].v.LessThan(rs[j].v) })
		rs[len(rs)-1].latest = true
	}
	return byMinor
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	version "github.com/hashicorp/go-version"
)

// moduleFileName is the name of a module's table and sample directory: the
// module path with / replaced by _, as offsets.ModuleTable reads it.
func moduleFileName(module string) string {
	return strings.ReplaceAll(module, "/", "_")
}

// escapePath escapes a module path (or version) for the module proxy
// protocol: every uppercase letter becomes '!' and its lowercase, so that
// case-insensitive file systems can serve it. It rejects what cannot be a
// module path rather than sending it to the proxy.
func escapePath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty module path")
	}
	var b strings.Builder
	for _, r := range p {
		switch {
		case r == '!' || r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r):
			return "", fmt.Errorf("malformed module path %q: character %q", p, r)
		case 'A' <= r && r <= 'Z':
			b.WriteByte('!')
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") || strings.Contains(p, "..") {
		return "", fmt.Errorf("malformed module path %q", p)
	}
	return b.String(), nil
}

// proxyURL picks the module proxy from a GOPROXY value: the first entry that
// is an http(s) URL ("direct" and "off" cannot list versions by URL).
func proxyURL(goproxy string) (string, error) {
	for _, e := range strings.FieldsFunc(goproxy, func(r rune) bool { return r == ',' || r == '|' }) {
		e = strings.TrimSpace(e)
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "http://") {
			return strings.TrimSuffix(e, "/"), nil
		}
	}
	return "", fmt.Errorf("GOPROXY=%q names no http(s) module proxy; set it to one (e.g. GOPROXY=https://proxy.golang.org)", goproxy)
}

// moduleRelease matches the release versions of a module: vX.Y.Z, without
// pre-release or build metadata (and so no pseudo-version).
var moduleRelease = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)

// parseModuleVersions picks the releases at or after since out of a
// module's version list (one a line, as $GOPROXY/<module>/@v/list gives it),
// and groups them by minor series (X.Y), oldest first, each series sorted
// with its newest patch marked latest. A release's name is the version as
// the module writes it ("v0.30.0") and minor its Y.
func parseModuleVersions(list []string, since *version.Version) [][]release {
	bySeries := make(map[[2]int][]release)
	seen := make(map[string]bool)
	for _, s := range list {
		s = strings.TrimSpace(s)
		m := moduleRelease.FindStringSubmatch(s)
		if m == nil || seen[s] {
			continue
		}
		seen[s] = true
		var n [3]int
		ok := true
		for i := range n {
			x, err := strconv.Atoi(m[i+1])
			if err != nil || (len(m[i+1]) > 1 && m[i+1][0] == '0') {
				ok = false // overflows, or a leading zero: not semver
			}
			n[i] = x
		}
		if !ok {
			continue
		}
		v := version.Must(version.NewVersion(strings.TrimPrefix(s, "v")))
		if since != nil && v.LessThan(since) {
			continue
		}
		key := [2]int{n[0], n[1]}
		bySeries[key] = append(bySeries[key], release{name: s, v: v, minor: n[1]})
	}
	var keys [][2]int
	for k := range bySeries {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	res := make([][]release, 0, len(keys))
	for _, k := range keys {
		rs := bySeries[k]
		sort.Slice(rs, func(i, j int) bool { return rs[i].v.LessThan(rs[j].v) })
		rs[len(rs)-1].latest = true
		res = append(res, rs)
	}
	return res
}

// cutAtNewerGo drops, from the grouped releases (in order), the first
// release whose go.mod needs a newer Go than goVersion and every later one:
// the local toolchain cannot build them, so they stay unchecked, and cutting
// the tail (rather than punching holes) keeps every covered range honest.
// goLine returns a release's go directive ("1.23.0", "" when none).
func cutAtNewerGo(series [][]release, goVersion *version.Version, goLine func(release) (string, error)) ([][]release, []release, error) {
	var lineErr error
	kept, dropped := cutWhere(series, func(r release) bool {
		g, err := goLine(r)
		if err != nil {
			lineErr = err
			return true
		}
		if g == "" {
			return false
		}
		need, err := version.NewVersion(g)
		// An unreadable go line is left to the build to judge.
		return err == nil && need.GreaterThan(goVersion)
	})
	if lineErr != nil {
		return nil, nil, lineErr
	}
	return kept, dropped, nil
}

// cutWhere drops, from the grouped releases (in order), the first release
// stop reports and every later one, without changing series, and returns
// what is kept and what was dropped (nil when stop reports none).
func cutWhere(series [][]release, stop func(release) bool) ([][]release, []release) {
	for i, rs := range series {
		for j, r := range rs {
			if !stop(r) {
				continue
			}
			var dropped []release
			dropped = append(dropped, rs[j:]...)
			for _, later := range series[i+1:] {
				dropped = append(dropped, later...)
			}
			kept := append([][]release(nil), series[:i]...)
			if j > 0 {
				kept = append(kept, append([]release(nil), rs[:j]...))
			}
			return kept, dropped
		}
	}
	return series, nil
}

// goDirective is the go line of a go.mod file, "" when it has none.
func goDirective(gomod string) string {
	m := regexp.MustCompile(`(?m)^go[ \t]+([^ \t\r\n/]+)`).FindStringSubmatch(gomod)
	if m == nil {
		return ""
	}
	return m[1]
}

// moduleProxy reads a module's list and go.mod files from the module proxy.
type moduleProxy struct {
	base   string // the proxy URL
	module string
	esc    string // the module path escaped for the proxy
	client *http.Client
}

func newModuleProxy(module string) (*moduleProxy, error) {
	esc, err := escapePath(module)
	if err != nil {
		return nil, err
	}
	base, err := proxyURL(goEnv("GOPROXY"))
	if err != nil {
		return nil, err
	}
	return &moduleProxy{base: base, module: module, esc: esc, client: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (p *moduleProxy) get(rest string) (string, error) {
	u := p.base + "/" + p.esc + "/@v/" + rest
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking the module proxy for %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("reading %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the module proxy answered %s for %s: %s", resp.Status, u, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// versions is the module's version list.
func (p *moduleProxy) versions() ([]string, error) {
	body, err := p.get("list")
	if err != nil {
		return nil, err
	}
	return strings.Split(body, "\n"), nil
}

// goLine is the go directive of r's go.mod.
func (p *moduleProxy) goLine(r release) (string, error) {
	esc, err := escapePath(r.name)
	if err != nil {
		return "", err
	}
	body, err := p.get(esc + ".mod")
	if err != nil {
		return "", err
	}
	return goDirective(body), nil
}

// localGoVersion is the version of the go command that builds the module
// samples ("go1.26.8"), and that version parsed.
func localGoVersion() (string, *version.Version, error) {
	s := goEnv("GOVERSION")
	m := regexp.MustCompile(`^go(\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(s)
	if m == nil {
		return "", nil, fmt.Errorf("cannot read the local Go version from `go env GOVERSION` = %q", s)
	}
	v, err := version.NewVersion(m[1])
	if err != nil {
		return "", nil, err
	}
	return m[0], v, nil
}

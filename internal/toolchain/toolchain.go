// Package toolchain fetches real Go toolchains from the module proxy and
// builds programs with them. The offsets generator and the end-to-end tests
// use it to produce target binaries for every Go version uranus supports.
//
// A toolchain is the module golang.org/toolchain@v0.0.1-goX.Y.Z.linux-ARCH.
// The module cache holds it read-only and without execute bits, and old
// toolchains write into GOROOT/pkg while building, so each one is copied once
// into a writable GOROOT under the module cache (GOMODCACHE/cache/uranus-goroot)
// where later runs, and CI on the same machine, find it again.
package toolchain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// Toolchain is an installed Go toolchain ready to build programs.
type Toolchain struct {
	Version string // "go1.16.15"
	GOROOT  string
}

var installMu sync.Mutex

// Get returns the toolchain for version ("go1.16.15" or "1.16.15"), fetching
// it through the module proxy with the host's go command when it is not
// cached yet. Progress goes to logf when it is non-nil: a download takes a while.
func Get(version string, logf func(format string, args ...any)) (*Toolchain, error) {
	if !strings.HasPrefix(version, "go") {
		version = "go" + version
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cache, err := cacheDir()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(cache, version+".linux-"+runtime.GOARCH)
	if ready(root) {
		return &Toolchain{Version: version, GOROOT: root}, nil
	}

	installMu.Lock()
	defer installMu.Unlock()
	// go test runs packages in parallel processes: one installs, the others
	// wait for it rather than replace a GOROOT that is in use.
	unlock, err := lockFile(root + ".lock")
	if err != nil {
		return nil, fmt.Errorf("installing toolchain %s: %w", version, err)
	}
	defer unlock()
	if ready(root) {
		return &Toolchain{Version: version, GOROOT: root}, nil
	}
	mod := "golang.org/toolchain@v0.0.1-" + version + ".linux-" + runtime.GOARCH
	logf("downloading %s from the module proxy", mod)
	cmd := exec.Command(hostGo(), "mod", "download", "-json", mod)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	cmd.Dir = os.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("downloading toolchain %s: %v: %s (check network access to the Go module proxy, GOPROXY=%s)",
			version, err, bytes.TrimSpace(stderr.Bytes()), os.Getenv("GOPROXY"))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return nil, fmt.Errorf("downloading toolchain %s: unexpected go mod download output %q", version, out)
	}

	logf("installing %s into %s", version, root)
	tmp, err := os.MkdirTemp(cache, version+".tmp-")
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("installing toolchain %s: %w", version, err)
	}
	if err := copyTree(info.Dir, tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("installing toolchain %s: %w", version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("installing toolchain %s: %w", version, err)
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return nil, fmt.Errorf("installing toolchain %s: %w", version, err)
	}
	if !ready(root) {
		return nil, fmt.Errorf("installing toolchain %s: %s has no bin/go after copying", version, root)
	}
	return &Toolchain{Version: version, GOROOT: root}, nil
}

// Build compiles the main package in dir into out. extraEnv adds settings such
// as GOARCH=arm64 or CGO_ENABLED=1; ldflags are passed as -ldflags when set.
// The environment is built from scratch so that the host's GOFLAGS, GOENV or
// GOTOOLCHAIN cannot leak into an old toolchain that does not understand them.
func (t *Toolchain) Build(dir, out, ldflags string, extraEnv ...string) error {
	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags="+ldflags)
	}
	args = append(args, ".")
	cmd := exec.Command(filepath.Join(t.GOROOT, "bin", "go"), args...)
	cmd.Dir = dir
	cmd.Env = append(t.Env(), extraEnv...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s with %s: %v\n%s", dir, t.Version, err, b)
	}
	return nil
}

// Env is a clean environment for running this toolchain's go command.
func (t *Toolchain) Env() []string {
	cache, _ := cacheDir()
	work := filepath.Join(cache, "work", t.Version)
	env := []string{
		"PATH=" + filepath.Join(t.GOROOT, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + work,
		"GOROOT=" + t.GOROOT,
		"GOPATH=" + filepath.Join(work, "gopath"),
		"GOCACHE=" + filepath.Join(work, "gocache"),
		"GOENV=off",
		"GOFLAGS=",
		"GOTOOLCHAIN=local",
		"GOPROXY=" + hostEnv("GOPROXY"),
		"GOMODCACHE=" + hostEnv("GOMODCACHE"),
		"GONOSUMDB=" + os.Getenv("GONOSUMDB"),
		"GO111MODULE=on",
		"CGO_ENABLED=0",
	}
	return env
}

// MinorVersion returns 16 for "go1.16.15".
func (t *Toolchain) MinorVersion() int {
	var major, minor int
	fmt.Sscanf(strings.TrimPrefix(t.Version, "go"), "%d.%d", &major, &minor)
	return minor
}

var hostEnvCache sync.Map

// hostEnv is a setting of the host's go command (go env NAME), cached.
func hostEnv(name string) string {
	if v, ok := hostEnvCache.Load(name); ok {
		return v.(string)
	}
	out, _ := exec.Command(hostGo(), "env", name).Output()
	v := strings.TrimSpace(string(out))
	hostEnvCache.Store(name, v)
	return v
}

// lockFile takes an exclusive flock on path, creating it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// completeMarker is written into a GOROOT copy once it is whole, so that a
// copy cut short (an interrupted run) is installed again, not used.
const completeMarker = ".uranus-complete"

func ready(root string) bool {
	fi, err := os.Stat(filepath.Join(root, "bin", "go"))
	if err != nil || fi.Mode()&0o111 == 0 {
		return false
	}
	_, err = os.Stat(filepath.Join(root, completeMarker))
	return err == nil
}

// hostGo is the go command that runs the tests or the generator: the one
// on PATH, as go test and go run themselves are found.
func hostGo() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// cacheDir is GOMODCACHE/cache/uranus-goroot, created on demand.
func cacheDir() (string, error) {
	if d := os.Getenv("URANUS_TOOLCHAIN_CACHE"); d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	mc := hostEnv("GOMODCACHE")
	if mc == "" {
		return "", fmt.Errorf("finding the module cache: go env GOMODCACHE printed nothing; set URANUS_TOOLCHAIN_CACHE to a writable directory")
	}
	d := filepath.Join(mc, "cache", "uranus-goroot")
	return d, os.MkdirAll(d, 0o755)
}

// copyTree copies a read-only module directory into a writable tree, making
// the files under bin/ and pkg/tool/ executable again: module zips do not
// keep permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		mode := os.FileMode(0o644)
		slash := filepath.ToSlash(rel)
		if strings.HasPrefix(slash, "bin/") || strings.HasPrefix(slash, "pkg/tool/") {
			mode = 0o755
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, mode)
	})
}

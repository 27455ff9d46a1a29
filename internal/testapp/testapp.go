// Package testapp builds the sample programs under testdata/ with real Go
// toolchains, for the end-to-end tests and the demo. A build is cached by the
// hash of its sources, toolchain and options, so repeated test runs reuse it.
package testapp

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/uranus-otel/uranus/internal/toolchain"
)

//go:embed testdata
var sources embed.FS

// Options select how a sample is built.
type Options struct {
	Stripped bool   // -ldflags=-s -w: no .symtab, no DWARF
	GOARCH   string // cross-compile, e.g. "arm64"; empty for the host
	CGO      bool   // CGO_ENABLED=1 with external linking
	// Require pins one dependency of a sample with a go.mod.tmpl, as
	// "google.golang.org/grpc@v1.40.0", and lets the go command resolve the
	// rest, so one sample builds against several versions of a library.
	// Empty builds with the template's requirements as they are.
	Require string
}

func (o Options) String() string {
	s := "plain"
	if o.Stripped {
		s = "stripped"
	}
	if o.GOARCH != "" {
		s += "-" + o.GOARCH
	}
	if o.CGO {
		s += "-cgo"
	}
	if o.Require != "" {
		// It names the binary: no slashes.
		s += "-" + strings.ReplaceAll(o.Require, "/", "_")
	}
	return s
}

// Names lists the sample programs.
func Names() []string {
	entries, _ := sources.ReadDir("testdata")
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// Build compiles sample name with toolchain version ("1.16.15") and returns
// the binary's path, building it only when no cached copy exists.
//
// With URANUS_TESTAPP_DIR set (inside the test VM, which has no toolchains)
// it only looks for a binary of the same name in that directory.
func Build(name, version string, opts Options, logf func(string, ...any)) (string, error) {
	if !strings.HasPrefix(version, "go") {
		version = "go" + version
	}
	base, err := binaryName(name, version, opts)
	if err != nil {
		return "", err
	}
	if dir := os.Getenv("URANUS_TESTAPP_DIR"); dir != "" {
		p := filepath.Join(dir, base)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("sample %s for %s (%s) was not prebuilt into %s", name, version, opts, dir)
		}
		return p, nil
	}
	tc, err := toolchain.Get(version, logf)
	if err != nil {
		return "", err
	}
	files, _ := fs.Sub(sources, path.Join("testdata", name))
	out := filepath.Join(filepath.Dir(tc.GOROOT), "bin", base)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	return out, build(tc, name, files, out, opts, logf)
}

// binaryName names a build by sample, toolchain, options and the hash of
// the sample's sources, so that editing a sample rebuilds it.
func binaryName(name, version string, opts Options) (string, error) {
	files, err := fs.Sub(sources, path.Join("testdata", name))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", version, opts)
	err = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading sample %q: %w", name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	return fmt.Sprintf("%s-%s-%s-%s", name, version, opts, sum), nil
}

func build(tc *toolchain.Toolchain, name string, files fs.FS, out string, opts Options, logf func(string, ...any)) error {
	dir, err := os.MkdirTemp("", "uranus-testapp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.CopyFS(dir, files); err != nil {
		return fmt.Errorf("copying sample %q: %w", name, err)
	}
	// The go line selects language and GODEBUG defaults (Go 1.22 mux patterns
	// need go >= 1.22), so it follows the toolchain. A sample with
	// dependencies brings go.mod.tmpl (with {{GO}} for the version) and go.sum.
	goLine := fmt.Sprintf("1.%d", tc.MinorVersion())
	gomod := fmt.Sprintf("module example.com/%s\n\ngo %s\n", name, goLine)
	if tmpl, err := os.ReadFile(filepath.Join(dir, "go.mod.tmpl")); err == nil {
		gomod = strings.ReplaceAll(string(tmpl), "{{GO}}", goLine)
	}
	if opts.Require != "" {
		// The template's indirect requirements were resolved for its own
		// versions, and would hold the pinned version's dependencies at
		// theirs or clash with them (google.golang.org/genproto before and
		// after it was split into modules): the go command resolves them
		// again from the pinned version.
		var lines []string
		for _, l := range strings.Split(gomod, "\n") {
			if !strings.HasSuffix(strings.TrimSpace(l), "// indirect") {
				lines = append(lines, l)
			}
		}
		gomod = strings.Join(lines, "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if opts.Require != "" {
		if logf != nil {
			logf("resolving %s for %s with %s", opts.Require, name, tc.Version)
		}
		if err := require(tc, dir, opts.Require); err != nil {
			return err
		}
	}
	var env []string
	if opts.GOARCH != "" {
		env = append(env, "GOARCH="+opts.GOARCH)
	}
	ldflags := ""
	if opts.Stripped {
		ldflags = "-s -w"
	}
	if opts.CGO {
		env = append(env, "CGO_ENABLED=1")
		ldflags = strings.TrimSpace(ldflags + " -linkmode=external")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	// Test packages run as parallel processes and may build the same sample:
	// each writes its own file, and the rename makes either one the result.
	tmp := fmt.Sprintf("%s.tmp%d", out, os.Getpid())
	defer os.Remove(tmp)
	if err := tc.Build(dir, tmp, ldflags, env...); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// require pins module@version in the module in dir and resolves the other
// requirements and go.sum with go mod tidy, in the toolchain's environment:
// the host's GOPROXY and the default checksum database (the sample's go.sum
// is only a head start; a cold module cache works too). A pinned version
// that needs a newer Go fails here, with "requires go >= 1.X". From Go 1.17
// on, -compat is the go line itself, as nothing older reads this go.mod;
// the default, the release before, makes Go 1.17's tidy keep the checksums
// of the whole unpruned graph for Go 1.16. Go 1.16's tidy has no -compat.
func require(tc *toolchain.Toolchain, dir, modVersion string) error {
	tidy := []string{"mod", "tidy"}
	if m := tc.MinorVersion(); m >= 17 {
		tidy = append(tidy, fmt.Sprintf("-compat=1.%d", m))
	}
	for _, args := range [][]string{{"mod", "edit", "-require=" + modVersion}, tidy} {
		cmd := exec.Command(filepath.Join(tc.GOROOT, "bin", "go"), args...)
		cmd.Dir = dir
		cmd.Env = tc.Env()
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pinning %s with %s: go %s: %v\n%s", modVersion, tc.Version, strings.Join(args, " "), err, b)
		}
	}
	return nil
}

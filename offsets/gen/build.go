package main

import (
	"crypto/sha256"
	"debug/elf"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/uranus-otel/uranus/internal/toolchain"
	"github.com/uranus-otel/uranus/offsets"
)

// The sample lives under testdata so that the module's own builds, vet and
// linters leave it alone; only toolchains the generator fetches compile it.
//
//go:embed testdata/sample
var sampleFS embed.FS

// The samples of modules outside the standard library, one directory per
// module named like its table (testdata/modules/golang.org_x_net).
//
//go:embed testdata/modules
var moduleSampleFS embed.FS

// builder builds the sample with one toolchain and reads its layout.
type builder struct {
	fields   []offsets.Field
	optional map[string]string
	rebuild  bool
	goarch   string

	cacheDir string // where toolchain.Get installs GOROOTs
	modCache string // GOMODCACHE
	binDir   string // cached sample builds, one per toolchain
	files    map[string][]byte
	hash     string // of the sample's sources: a changed sample is rebuilt

	// A module's builder builds the module's sample against each release
	// of module with Go goVersion ("go1.26.8"): tc, or the local go
	// command when tc is nil.
	module    string
	goVersion string
	tc        *toolchain.Toolchain
	sampleDir string // for messages: offsets/gen/testdata/…
}

func newBuilder(fields []offsets.Field, optional map[string]string, rebuild bool) (*builder, error) {
	b := &builder{fields: fields, optional: optional, rebuild: rebuild, goarch: runtime.GOARCH, files: make(map[string][]byte)}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return nil, fmt.Errorf("finding the module cache with go env GOMODCACHE: %v", err)
	}
	b.modCache = strings.TrimSpace(string(out))
	// The same place internal/toolchain installs GOROOTs, so that cleaning
	// one cleans the other.
	b.cacheDir = os.Getenv("URANUS_TOOLCHAIN_CACHE")
	if b.cacheDir == "" {
		b.cacheDir = filepath.Join(b.modCache, "cache", "uranus-goroot")
	}
	b.binDir = filepath.Join(b.cacheDir, "offsets-bin")
	if err := os.MkdirAll(b.binDir, 0o755); err != nil {
		return nil, err
	}

	b.sampleDir = "offsets/gen/testdata/sample"
	if err := b.loadSample(sampleFS, "testdata/sample"); err != nil {
		return nil, err
	}
	return b, nil
}

// newModuleBuilder is the builder of module's table: it builds
// testdata/modules/<module file name> against each release of module with
// Go goVersion, which is tc, or the local toolchain when tc is nil.
func newModuleBuilder(module, goVersion string, tc *toolchain.Toolchain, fields []offsets.Field, optional map[string]string, rebuild bool) (*builder, error) {
	b, err := newBuilder(fields, optional, rebuild)
	if err != nil {
		return nil, err
	}
	dir := "testdata/modules/" + moduleFileName(module)
	b.module, b.goVersion, b.tc, b.sampleDir = module, goVersion, tc, "offsets/gen/"+dir
	b.files = make(map[string][]byte)
	if _, err := fs.Stat(moduleSampleFS, dir); err != nil {
		return nil, fmt.Errorf("no sample program for %s: write %s/main.go, a program that uses the wanted structs so that the linker keeps them in DWARF", module, b.sampleDir)
	}
	if err := b.loadSample(moduleSampleFS, dir); err != nil {
		return nil, err
	}
	b.binDir = filepath.Join(b.binDir, "modules")
	if err := os.MkdirAll(b.binDir, 0o755); err != nil {
		return nil, err
	}
	return b, nil
}

// loadSample reads the sample's files from dir of fsys and hashes them.
func (b *builder) loadSample(fsys fs.FS, dir string) error {
	h := sha256.New()
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		b.files[name] = data
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return err
	}
	b.hash = hex.EncodeToString(h.Sum(nil))[:12]
	return nil
}

// binPrefix is the name of r's cached builds without the sample's hash.
func (b *builder) binPrefix(r release) string {
	if b.module != "" {
		return fmt.Sprintf("%s@%s.%s.linux-%s-", moduleFileName(b.module), r.name, b.goVersion, b.goarch)
	}
	return fmt.Sprintf("%s.linux-%s-", r.name, b.goarch)
}

// layout returns the layout of the wanted fields in release r, building the
// sample with r's toolchain (or against r of the module) unless a build for
// the current sample is cached.
func (b *builder) layout(r release, logf func(string, ...any)) (layout, error) {
	bin := filepath.Join(b.binDir, b.binPrefix(r)+b.hash)
	build := b.build
	if b.module != "" {
		build = b.buildModule
	}
	if _, err := os.Stat(bin); err == nil && !b.rebuild {
		logf("checking %s … cached build", r.name)
	} else if err := build(r, bin, logf); err != nil {
		return nil, err
	}
	return b.read(r, bin)
}

// needsNewerGoError is a release of a module whose build needs a newer Go
// than the one building the samples: a dependency's go.mod says so, though
// the module's own did not (cutAtNewerGo reads that one).
type needsNewerGoError struct {
	rel release
	why string // the go command's words
}

func (e *needsNewerGoError) Error() string {
	return fmt.Sprintf("%s needs a newer Go: %s", e.rel.name, e.why)
}

// newerGoNeeded finds, in the go command's output, that a module needs a
// newer Go than the one running ("requires go >= 1.23 (running go 1.22.12;
// GOTOOLCHAIN=local)"), or, from an older go command, the compiler's "note:
// module requires Go 1.23".
var newerGoNeeded = regexp.MustCompile(`[^\n]*(?:requires go >= [0-9.]+ \(running go|note: module requires Go [0-9.]+)[^\n]*`)

// buildModule builds the module's sample against release r of the module
// with b's Go (b.tc, or the local toolchain), in a temporary module whose
// requirements `go mod tidy` completes from the module proxy. A release
// that needs a newer Go gives a *needsNewerGoError.
func (b *builder) buildModule(r release, bin string, logf func(string, ...any)) error {
	logf("checking %s@%s … building with %s", b.module, r.name, b.goVersion)
	dir, err := b.writeSample("uranus-offsets-module-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lang := strings.Join(strings.SplitN(strings.TrimPrefix(b.goVersion, "go"), ".", 3)[:2], ".")
	gomod := fmt.Sprintf("module example.com/sample\n\ngo %s\n\nrequire %s %s\n", lang, b.module, r.name)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	gocmd := func(args ...string) (string, error) {
		cmd := exec.Command("go", args...)
		// The chosen toolchain, this temporary module alone, and the
		// default build flags: DWARF is kept.
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		if b.tc != nil {
			// A clean environment (see toolchain.Env) sharing the
			// host's module cache and proxy.
			cmd = exec.Command(filepath.Join(b.tc.GOROOT, "bin", "go"), args...)
			cmd.Env = append(b.tc.Env(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if m := newerGoNeeded.Find(out); err != nil && m != nil {
			return "", &needsNewerGoError{rel: r, why: strings.TrimSpace(string(m))}
		}
		if err != nil {
			return "", fmt.Errorf("%s@%s: go %s with %s: %v\n%s", b.module, r.name, strings.Join(args, " "), b.goVersion, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := gocmd("mod", "tidy"); err != nil {
		return err
	}
	// Another requirement may have pulled a newer release in; its layout
	// would be recorded under r's name.
	got, err := gocmd("list", "-m", "-f", "{{.Version}}", b.module)
	if err != nil {
		return err
	}
	if got != r.name {
		return fmt.Errorf("%s@%s: the sample's build selects %s %s instead (a dependency requires it), so %s cannot be checked", b.module, r.name, b.module, got, r.name)
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	defer os.Remove(tmp)
	if _, err := gocmd("build", "-o", tmp, "."); err != nil {
		return err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return err
	}
	b.removeOldBuilds(r, bin)
	logf("%s@%s: built", b.module, r.name)
	return nil
}

// removeOldBuilds deletes r's builds of an older sample: they are useless now.
func (b *builder) removeOldBuilds(r release, bin string) {
	old, _ := filepath.Glob(filepath.Join(b.binDir, b.binPrefix(r)+"*"))
	for _, o := range old {
		if o != bin {
			os.Remove(o)
		}
	}
}

func (b *builder) build(r release, bin string, logf func(string, ...any)) error {
	goroot := filepath.Join(b.cacheDir, r.name+".linux-"+b.goarch)
	installed := !isDir(filepath.Join(goroot, "bin"))
	if installed {
		logf("checking %s … downloading toolchain …", r.name)
	} else {
		logf("checking %s … toolchain cached, building", r.name)
	}
	tc, err := toolchain.Get(r.name, func(format string, args ...any) { logf(r.name+": "+format, args...) })
	if err != nil {
		return err
	}
	dir, err := b.writeSample("uranus-offsets-sample-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The go line follows the toolchain: 1.22 ServeMux patterns need it.
	gomod := fmt.Sprintf("module uranus.example/offsets-sample\n\ngo 1.%d\n", r.minor)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	defer os.Remove(tmp)
	if err := tc.Build(dir, tmp, ""); err != nil {
		return err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return err
	}
	b.removeOldBuilds(r, bin)
	if installed && !r.latest {
		logf("%s: built; removing its toolchain (only the newest patch of a series is kept)", r.name)
		b.removeToolchain(tc)
	} else {
		logf("%s: built", r.name)
	}
	return nil
}

// removeToolchain deletes the writable GOROOT, its build cache and the
// module cache's extracted copy; the module zip stays, so a rebuild needs no
// download.
func (b *builder) removeToolchain(tc *toolchain.Toolchain) {
	os.RemoveAll(tc.GOROOT)
	os.RemoveAll(filepath.Join(b.cacheDir, "work", tc.Version))
	mod := filepath.Join(b.modCache, "golang.org", "toolchain@v0.0.1-"+tc.Version+".linux-"+b.goarch)
	if isDir(mod) {
		// The module cache is read-only; make it writable to remove it.
		filepath.WalkDir(mod, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(mod)
	}
}

// read takes the layout of the wanted fields from the DWARF of bin.
func (b *builder) read(r release, bin string) (layout, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: reading DWARF of %s: %w", r.name, bin, err)
	}
	fields := b.fields
	res, err := offsets.FromDWARF(d, fields)
	var miss *offsets.MissingStructsError
	absent := make(map[string]bool)
	if errors.As(err, &miss) {
		var notOptional []string
		for _, s := range miss.Structs {
			absent[s] = true
			if _, ok := b.optional[s]; !ok {
				notOptional = append(notOptional, s)
			}
		}
		if len(notOptional) > 0 {
			return nil, fmt.Errorf("%s: the sample's DWARF has no %s: either %s does not use it, so the linker dropped it (make the sample exercise it), or this version has no such struct (then list it in the optional structs in offsets/gen/fields.go)",
				r.name, strings.Join(notOptional, ", "), b.sampleDir)
		}
		fields = nil
		for _, f := range b.fields {
			if !absent[f.Struct] {
				fields = append(fields, f)
			}
		}
		res, err = offsets.FromDWARF(d, fields)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	l := make(layout, len(b.fields))
	for _, f := range b.fields {
		switch o := res[f]; {
		case absent[f.Struct]:
			l[f] = cell{absent: "struct"}
		case !o.Present:
			l[f] = cell{absent: "member"}
		default:
			l[f] = cell{off: o.Value}
		}
	}
	return l, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// writeSample writes the sample's files into a new temporary directory; the
// caller removes it.
func (b *builder) writeSample(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	for name, data := range b.files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

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

	h := sha256.New()
	err = fs.WalkDir(sampleFS, "testdata/sample", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := sampleFS.ReadFile(p)
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
		return nil, err
	}
	b.hash = hex.EncodeToString(h.Sum(nil))[:12]
	return b, nil
}

// layout returns the layout of the wanted fields in release r, building the
// sample with r's toolchain unless a build for the current sample is cached.
func (b *builder) layout(r release, logf func(string, ...any)) (layout, error) {
	bin := filepath.Join(b.binDir, fmt.Sprintf("%s.linux-%s-%s", r.name, b.goarch, b.hash))
	if _, err := os.Stat(bin); err == nil && !b.rebuild {
		logf("checking %s … cached build", r.name)
	} else if err := b.build(r, bin, logf); err != nil {
		return nil, err
	}
	return b.read(r, bin)
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
	dir, err := os.MkdirTemp("", "uranus-offsets-sample-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, data := range b.files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
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
	// Builds of an older sample are useless now.
	old, _ := filepath.Glob(filepath.Join(b.binDir, fmt.Sprintf("%s.linux-%s-*", r.name, b.goarch)))
	for _, o := range old {
		if o != bin {
			os.Remove(o)
		}
	}
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
			return nil, fmt.Errorf("%s: the sample's DWARF has no %s: either offsets/gen/testdata/sample does not use it, so the linker dropped it (make the sample exercise it), or this Go version has no such struct (then list it in optionalStructs in offsets/gen/fields.go)",
				r.name, strings.Join(notOptional, ", "))
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

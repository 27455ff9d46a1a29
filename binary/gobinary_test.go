package binary

import (
	"crypto/sha256"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/uranus-otel/uranus/internal/testapp"
	"github.com/uranus-otel/uranus/internal/toolchain"
)

func TestVersionAndABI(t *testing.T) {
	tests := []struct {
		version, goarch string
		regABI          bool
	}{
		{"1.13.15", "", false},
		{"1.16.15", "", false},
		{"1.17.13", "", true},
		{"1.22.12", "", true},
		{"1.26.8", "", true},
		{"1.27.4", "", true},
		{"1.16.15", "arm64", false},
		{"1.17.13", "arm64", false}, // arm64 switched to registers one release later
		{"1.18.10", "arm64", true},
		{"1.22.12", "arm64", true},
		{"1.26.8", "arm64", true},
		{"1.27.4", "arm64", true},
	}
	for _, tt := range tests {
		for _, stripped := range []bool{false, true} {
			opts := testapp.Options{GOARCH: tt.goarch, Stripped: stripped}
			t.Run(tt.version+"-"+opts.String(), func(t *testing.T) {
				f := open(t, build(t, tt.version, opts))
				wantArch := tt.goarch
				if wantArch == "" {
					wantArch = "amd64"
				}
				if f.Arch != wantArch {
					t.Errorf("Arch = %q, want %q", f.Arch, wantArch)
				}
				if f.GoVersion != "go"+tt.version {
					t.Errorf("GoVersion = %q, want %q", f.GoVersion, "go"+tt.version)
				}
				if f.Version == nil || f.Version.String() != tt.version {
					t.Errorf("Version = %v, want %s", f.Version, tt.version)
				}
				if !f.IsGo() {
					t.Error("IsGo() = false")
				}
				if f.RegABI != tt.regABI {
					t.Errorf("RegABI = %v, want %v", f.RegABI, tt.regABI)
				}
				if f.Stripped != stripped {
					t.Errorf("Stripped = %v, want %v", f.Stripped, stripped)
				}
				if f.HasDWARF == stripped {
					t.Errorf("HasDWARF = %v for a build with stripped=%v", f.HasDWARF, stripped)
				}
				if f.MainPath != "example.com/roundtrip" {
					t.Errorf("MainPath = %q", f.MainPath)
				}
				// Build settings are recorded since Go 1.18.
				if f.AtLeast(1, 18) {
					if got := f.Settings["GOARCH"]; got != wantArch {
						t.Errorf(`Settings["GOARCH"] = %q, want %q`, got, wantArch)
					}
					if got := f.Settings["CGO_ENABLED"]; got != "0" {
						t.Errorf(`Settings["CGO_ENABLED"] = %q, want "0"`, got)
					}
					if stripped && !strings.Contains(f.Settings["-ldflags"], "-s -w") {
						t.Errorf(`Settings["-ldflags"] = %q, want -s -w`, f.Settings["-ldflags"])
					}
				}
				d, err := f.DWARF()
				if stripped {
					if err == nil {
						t.Error("DWARF() succeeded on a -w build")
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					// Go 1.13 compresses DWARF into .zdebug_* sections.
					e, err := d.Reader().Next()
					if err != nil || e == nil {
						t.Errorf("reading the first DWARF entry: %v %v", e, err)
					}
				}
			})
		}
	}
}

// TestStrippedMatchesSymtab is the main correctness check for .gopclntab
// lookups: a stripped build must place every function exactly where the
// symbol table of the same build without -s -w puts it. It covers internal
// linking on every Go release, external linking (cgo, where .text starts
// with C code before runtime.text), and arm64.
func TestStrippedMatchesSymtab(t *testing.T) {
	type variant struct {
		version string
		opts    testapp.Options
	}
	var variants []variant
	for _, v := range allVersions {
		variants = append(variants, variant{v, testapp.Options{}}, variant{v, testapp.Options{CGO: true}})
	}
	for _, v := range []string{"1.16.15", "1.18.10", "1.22.12", "1.26.8", "1.27.4"} {
		variants = append(variants, variant{v, testapp.Options{GOARCH: "arm64"}})
	}
	for _, vv := range variants {
		t.Run(vv.version+"-"+vv.opts.String(), func(t *testing.T) {
			plainOpts, strippedOpts := vv.opts, vv.opts
			strippedOpts.Stripped = true
			plain := open(t, build(t, vv.version, plainOpts))
			stripped := open(t, build(t, vv.version, strippedOpts))
			if plain.Stripped || !stripped.Stripped {
				t.Fatalf("Stripped: plain=%v stripped=%v", plain.Stripped, stripped.Stripped)
			}

			for _, name := range probeFuncs {
				want, err := plain.Func(name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := stripped.Func(name)
				if err != nil {
					t.Fatal(err)
				}
				if want.Source != "symtab" || got.Source != "pclntab" {
					t.Errorf("%s: sources %q and %q, want symtab and pclntab", name, want.Source, got.Source)
				}
				if !sameFunc(want, got) {
					t.Errorf("%s:\n  symtab  %+v\n  pclntab %+v", name, *want, *got)
				}
				if len(got.RetOffsets) == 0 {
					t.Errorf("%s: no RET found", name)
				}
				if want.Section != ".text" {
					t.Errorf("%s: section %q, want .text", name, want.Section)
				}
			}

			// Now every Go function of the binary, ABI0 twins included.
			p, err := stripped.loadPclntab()
			if err != nil {
				t.Fatal(err)
			}
			plain.loadSymbols()
			var names []string
			for name := range plain.symtab {
				// go:textfipsstart and go:textfipsend (Go 1.24+) are
				// one-byte INT3 markers, not functions.
				if strings.HasPrefix(name, "go:") {
					continue
				}
				if _, ok := p.byName[strings.TrimSuffix(name, abiSuffix)]; ok {
					names = append(names, name)
				}
			}
			sort.Strings(names)
			var bad, decodeErrs []string
			for _, name := range names {
				want, werr := plain.Func(name)
				got, gerr := stripped.Func(name)
				switch {
				case werr != nil || gerr != nil:
					if (werr == nil) != (gerr == nil) || !errors.Is(werr, ErrDecode) || !errors.Is(gerr, ErrDecode) {
						bad = append(bad, fmt.Sprintf("%s: errors %v / %v", name, werr, gerr))
					} else {
						decodeErrs = append(decodeErrs, name)
					}
				case !sameFunc(want, got):
					bad = append(bad, fmt.Sprintf("%s:\n  symtab  %+v\n  pclntab %+v", name, *want, *got))
				}
			}
			t.Logf("%d functions compared (runtime.text from %s); undecodable assembly: %v", len(names), p.textFrom, decodeErrs)
			if len(names) < 3000 {
				t.Errorf("only %d functions compared", len(names))
			}
			for i, b := range bad {
				if i == 20 {
					t.Errorf("… %d more", len(bad)-20)
					break
				}
				t.Error(b)
			}
		})
	}
}

// TestRuntimeText proves where Go 1.18+ entry offsets start. On external
// linking .text begins with C start-up code, so .text is the wrong base; Go
// 1.26 removed pcHeader.textStart; runtime.firstmoduledata always has it.
func TestRuntimeText(t *testing.T) {
	for _, v := range []string{"1.18.10", "1.20.14", "1.22.12", "1.24.13", "1.25.14", "1.26.8", "1.27.4"} {
		for _, opts := range []testapp.Options{{}, {CGO: true}, {GOARCH: "arm64"}} {
			t.Run(v+"-"+opts.String(), func(t *testing.T) {
				plain := open(t, build(t, v, opts))
				strippedOpts := opts
				strippedOpts.Stripped = true
				stripped := open(t, build(t, v, strippedOpts))

				plain.loadSymbols()
				want := plain.runtimeText
				if want == 0 {
					t.Fatal("no runtime.text symbol in the unstripped build")
				}
				text := stripped.ELF().Section(".text")
				if opts.CGO && text.Addr == want {
					t.Fatalf("external linking put runtime.text at the start of .text (%#x); the test proves nothing", want)
				}

				pcln, pclnAddr, err := stripped.pclntabData()
				if err != nil {
					t.Fatal(err)
				}
				md, ok := stripped.textFromModuledata(pcln, pclnAddr)
				if !ok || md != want {
					t.Errorf("runtime.firstmoduledata.text = %#x (found %v), want %#x", md, ok, want)
				}
				hdr := stripped.ELF().ByteOrder.Uint64(pcln[8+2*8:])
				if stripped.AtLeast(1, 26) {
					if hdr != 0 {
						t.Errorf("pcHeader.textStart = %#x, expected Go %s to leave it 0", hdr, v)
					}
				} else if hdr != want {
					t.Errorf("pcHeader.textStart = %#x, want %#x", hdr, want)
				}
				p, err := stripped.loadPclntab()
				if err != nil {
					t.Fatal(err)
				}
				if p.textStart != want || p.textFrom != "moduledata" {
					t.Errorf("loadPclntab: runtime.text %#x from %s, want %#x from moduledata", p.textStart, p.textFrom, want)
				}
				t.Logf(".text %#x, runtime.text %#x, pcHeader.textStart %#x", text.Addr, want, hdr)

				// The last resort, .text checked against the entry point,
				// holds for internal linking only.
				if got := stripped.entryIsRt0(pcln, text.Addr); got == opts.CGO {
					t.Errorf("entry point on _rt0 with .text as base: %v, want %v", got, !opts.CGO)
				}

				if opts.CGO {
					// The trap: with .text as the base every function shifts.
					tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, text.Addr))
					if err != nil {
						t.Fatal(err)
					}
					good, _ := stripped.Func("main.main")
					if bad := tab.LookupFunc("main.main"); bad == nil || bad.Entry == good.Addr {
						t.Errorf("base .text gave main.main at %v, same as runtime.text base %#x", bad, good.Addr)
					} else {
						t.Logf("with .text as base main.main would be %#x instead of %#x", bad.Entry, good.Addr)
					}
				}
			})
		}
	}
}

// TestFileOffset checks FileOffset against readelf's section table and nm's
// addresses, and against the program headers.
func TestFileOffset(t *testing.T) {
	for _, opts := range []testapp.Options{{}, {CGO: true}, {GOARCH: "arm64"}} {
		t.Run(opts.String(), func(t *testing.T) {
			plainPath := build(t, "1.26.8", opts)
			strippedOpts := opts
			strippedOpts.Stripped = true
			strippedPath := build(t, "1.26.8", strippedOpts)
			addrs := nmFuncs(t, plainPath)
			for _, path := range []string{plainPath, strippedPath} {
				f := open(t, path)
				sections := readelfSections(t, path)
				for _, name := range append(probeFuncs, "runtime.schedinit", "net/http.(*conn).serve") {
					fn, err := f.Func(name)
					if err != nil {
						t.Fatal(err)
					}
					addr, ok := addrs[name]
					if !ok || addr != fn.Addr {
						t.Errorf("%s: Addr %#x, nm says %#x", name, fn.Addr, addr)
					}
					var want uint64
					found := false
					for _, s := range sections {
						if s.executable && s.addr <= addr && addr < s.addr+s.size {
							want, found = addr-s.addr+s.off, true
							if s.name != fn.Section {
								t.Errorf("%s: section %s, readelf says %s", name, fn.Section, s.name)
							}
						}
					}
					if !found || fn.FileOffset != want {
						t.Errorf("%s: FileOffset %#x, readelf gives %#x", name, fn.FileOffset, want)
					}
					for _, p := range f.ELF().Progs {
						if p.Type == elf.PT_LOAD && p.Vaddr <= addr && addr < p.Vaddr+p.Filesz {
							if off := addr - p.Vaddr + p.Off; off != fn.FileOffset {
								t.Errorf("%s: FileOffset %#x, program header gives %#x", name, fn.FileOffset, off)
							}
						}
					}
				}
			}
		})
	}
}

// TestRetSitesObjdump cross-checks RET sites with GNU objdump on every
// function of amd64 builds.
func TestRetSitesObjdump(t *testing.T) {
	for _, v := range []string{"1.13.15", "1.17.13", "1.22.12", "1.26.8", "1.27.4"} {
		for _, opts := range []testapp.Options{{}, {CGO: true}} {
			t.Run(v+"-"+opts.String(), func(t *testing.T) {
				path := build(t, v, opts)
				f := open(t, path)
				want := objdumpRets(t, path)
				checked, skipped := 0, []string{}
				shown := map[string]bool{}
				for addr, od := range want {
					shown[od.name] = true
					fn, err := f.Func(od.name)
					if errors.Is(err, ErrDecode) {
						skipped = append(skipped, od.name)
						continue
					}
					if errors.Is(err, ErrNoSymbol) {
						continue // objdump also shows non-function symbols
					}
					if err != nil {
						t.Errorf("%s: %v", od.name, err)
						continue
					}
					if fn.Addr != addr {
						continue // another function of the same name
					}
					var got []uint64
					for _, off := range fn.RetOffsets {
						got = append(got, fn.Addr+off)
					}
					if !equalU64(got, od.rets) {
						t.Errorf("%s: RETs at %x, objdump says %x", od.name, got, od.rets)
					}
					checked++
				}
				for _, name := range probeFuncs {
					if !shown[name] {
						t.Errorf("objdump does not show %s", name)
					}
				}
				sort.Strings(skipped)
				t.Logf("%d functions agree with objdump; undecodable: %v", checked, skipped)
				if checked < 3000 {
					t.Errorf("only %d functions checked", checked)
				}
			})
		}
	}
}

// TestRetSitesGoObjdumpARM64 cross-checks arm64 RET sites with the Go
// toolchain's objdump, which handles arm64 (binutils here is x86 only).
func TestRetSitesGoObjdumpARM64(t *testing.T) {
	for _, v := range []string{"1.16.15", "1.22.12", "1.26.8"} {
		t.Run(v, func(t *testing.T) {
			path := build(t, v, testapp.Options{GOARCH: "arm64"})
			f := open(t, path)
			want := goObjdumpRets(t, path, `^(main\.|net/http\.|runtime\.)`)
			for _, name := range probeFuncs {
				if len(want[name]) == 0 {
					t.Errorf("go tool objdump found no RET in %s", name)
				}
			}
			checked := 0
			for name, rets := range want {
				fn, err := f.Func(name)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				var got []uint64
				for _, off := range fn.RetOffsets {
					got = append(got, fn.Addr+off)
				}
				if !equalU64(got, rets) {
					t.Errorf("%s: RETs at %x, go tool objdump says %x", name, got, rets)
				}
				checked++
			}
			t.Logf("%d functions agree with go tool objdump", checked)
			if checked < 1000 {
				t.Errorf("only %d functions checked", checked)
			}
		})
	}
}

// TestABIWrappers pins down how ABI0 twins are resolved; see abiNote.
func TestABIWrappers(t *testing.T) {
	for _, v := range []string{"1.17.13", "1.22.12", "1.26.8", "1.27.4"} {
		for _, stripped := range []bool{false, true} {
			opts := testapp.Options{Stripped: stripped}
			t.Run(v+"-"+opts.String(), func(t *testing.T) {
				f := open(t, build(t, v, opts))
				// A Go function with an ABI0 wrapper for assembly callers.
				body, err := f.Func("runtime.schedinit")
				if err != nil {
					t.Fatal(err)
				}
				wrapper, err := f.Func("runtime.schedinit.abi0")
				if err != nil {
					t.Fatal(err)
				}
				if body.Addr == wrapper.Addr || body.Size <= wrapper.Size {
					t.Errorf("runtime.schedinit %#x (%d bytes) should be the big body, .abi0 %#x (%d bytes) the wrapper",
						body.Addr, body.Size, wrapper.Addr, wrapper.Size)
				}
				// An assembly function with an ABIInternal wrapper for Go callers.
				abiInternal, err := f.Func("runtime.asmcgocall")
				if err != nil {
					t.Fatal(err)
				}
				asm, err := f.Func("runtime.asmcgocall.abi0")
				if err != nil {
					t.Fatal(err)
				}
				if abiInternal.Addr == asm.Addr || abiInternal.Size >= asm.Size {
					t.Errorf("runtime.asmcgocall %#x (%d bytes) should be the small wrapper, .abi0 %#x (%d bytes) the assembly",
						abiInternal.Addr, abiInternal.Size, asm.Addr, asm.Size)
				}
				t.Logf("schedinit %#x/%d, .abi0 %#x/%d; asmcgocall %#x/%d, .abi0 %#x/%d",
					body.Addr, body.Size, wrapper.Addr, wrapper.Size, abiInternal.Addr, abiInternal.Size, asm.Addr, asm.Size)
			})
		}
	}
	t.Run("1.16.15-no-wrappers", func(t *testing.T) {
		for _, stripped := range []bool{false, true} {
			f := open(t, build(t, "1.16.15", testapp.Options{Stripped: stripped}))
			if _, err := f.Func("runtime.schedinit.abi0"); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("stripped=%v: Go 1.16 has no ABI wrappers, got %v", stripped, err)
			}
		}
	})
}

func TestNotFoundAndSuggest(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		opts := testapp.Options{Stripped: stripped, CGO: true}
		t.Run(opts.String(), func(t *testing.T) {
			path := build(t, "1.26.8", opts)
			f := open(t, path)
			_, err := f.Func("net/http.foo")
			if !errors.Is(err, ErrNoSymbol) {
				t.Fatalf("err = %v, want ErrNoSymbol", err)
			}
			tables := ".symtab or .gopclntab or .dynsym"
			if stripped {
				tables = ".gopclntab or .dynsym"
			}
			want := "function net/http.foo not found in " + path + " (not in " + tables + "; it may be inlined or the name misspelled)"
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}

			for _, tt := range []struct{ typo, want string }{
				{"net/http.serverHandler.ServeHTTPX", "net/http.serverHandler.ServeHTTP"},
				{"serverHandler.ServeHTTP", "net/http.serverHandler.ServeHTTP"},
				{"http.serverHandler.ServeHTTP", "net/http.serverHandler.ServeHTTP"},
				{"net/http.Transport.roundTrip", "net/http.(*Transport).roundTrip"},
				{"net/http.(*transport).RoundTrip", "net/http.(*Transport).RoundTrip"},
				{"Main.Main", "main.main"},
			} {
				got := f.Suggest(tt.typo)
				found := false
				for _, s := range got {
					found = found || s == tt.want
				}
				if !found {
					t.Errorf("Suggest(%q) = %q, want it to include %q", tt.typo, got, tt.want)
				}
			}
			if got := f.Suggest("zzzzzzzzzzzzzzzzzzzz"); len(got) != 0 {
				t.Errorf("Suggest(nonsense) = %q", got)
			}

			funcs := f.Funcs("main.")
			found := false
			for _, s := range funcs {
				if !strings.HasPrefix(s.Name, "main.") {
					t.Errorf("Funcs(main.) returned %s", s.Name)
				}
				found = found || s.Name == "main.main"
			}
			if !found {
				t.Errorf("Funcs(main.) = %v, want main.main", funcs)
			}
			all := f.Funcs("")
			if len(all) < 3000 {
				t.Errorf("Funcs() lists only %d functions", len(all))
			}
			for _, s := range all {
				if strings.HasSuffix(s.Name, abiSuffix) {
					t.Errorf("Funcs lists the ABI0 twin %s", s.Name)
					break
				}
			}
			// The C function of the cgo build is in .symtab only.
			fn, err := f.Func("utest_cgo_add")
			if stripped {
				if !errors.Is(err, ErrNoSymbol) {
					t.Errorf("utest_cgo_add in a stripped build: %v", err)
				}
			} else if err != nil || len(fn.RetOffsets) == 0 {
				t.Errorf("utest_cgo_add: %+v, %v", fn, err)
			}
		})
	}
}

// buildPIE builds the roundtrip sample as a position-independent executable,
// which testapp.Options cannot express; GOFLAGS carries -buildmode=pie.
func buildPIE(t *testing.T, version string, stripped, cgo bool) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds real Go programs; skipped with -short")
	}
	tc, err := toolchain.Get(version, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs("../internal/testapp/testdata/roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	// Cache next to testapp's builds, keyed by toolchain, options and sources.
	h := sha256.New()
	fmt.Fprintf(h, "%s pie stripped=%v cgo=%v\n", tc.Version, stripped, cgo)
	files, _ := filepath.Glob(filepath.Join(src, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	out := filepath.Join(filepath.Dir(tc.GOROOT), "bin", fmt.Sprintf("roundtrip-%s-pie-%x", tc.Version, h.Sum(nil)[:8]))
	if _, err := os.Stat(out); err == nil {
		return out
	}

	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	gomod := fmt.Sprintf("module example.com/roundtrip\n\ngo 1.%d\n", tc.MinorVersion())
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"GOFLAGS=-buildmode=pie"}
	ldflags := ""
	if stripped {
		ldflags = "-s -w"
	}
	if cgo {
		needTool(t, "gcc")
		env = append(env, "CGO_ENABLED=1")
		ldflags = strings.TrimSpace(ldflags + " -linkmode=external")
	}
	tmp := filepath.Join(dir, "roundtrip")
	if err := tc.Build(dir, tmp, ldflags, env...); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	tmp = fmt.Sprintf("%s.tmp%d", out, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPIE covers position-independent executables: .gopclntab may sit in a
// relro section, and firstmoduledata must still be found. Its words hold the
// link-time addresses in the file (the dynamic relocations repeat them), so
// no relocation processing is needed.
func TestPIE(t *testing.T) {
	for _, v := range []string{"1.22.12", "1.26.8"} {
		for _, cgo := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s-cgo=%v", v, cgo), func(t *testing.T) {
				plain := open(t, buildPIE(t, v, false, cgo))
				stripped := open(t, buildPIE(t, v, true, cgo))
				if plain.ELF().Type != elf.ET_DYN {
					t.Fatalf("ELF type %v, want ET_DYN", plain.ELF().Type)
				}
				p, err := stripped.loadPclntab()
				if err != nil {
					t.Fatal(err)
				}
				plain.loadSymbols()
				if p.textStart != plain.runtimeText || p.textFrom != "moduledata" {
					t.Errorf("runtime.text %#x from %s, symbol says %#x", p.textStart, p.textFrom, plain.runtimeText)
				}
				for _, name := range probeFuncs {
					want, err := plain.Func(name)
					if err != nil {
						t.Fatal(err)
					}
					got, err := stripped.Func(name)
					if err != nil {
						t.Fatal(err)
					}
					if !sameFunc(want, got) {
						t.Errorf("%s:\n  symtab  %+v\n  pclntab %+v", name, *want, *got)
					}
				}
			})
		}
	}
}

// TestModules: the modules a program links come from its build info, also
// when it is stripped (the relay sample requires golang.org/x/sync v0.1.0).
func TestModules(t *testing.T) {
	for _, v := range []string{"1.13.15", "1.27.4"} {
		bin, err := testapp.Build("relay", v, testapp.Options{Stripped: true}, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Modules["golang.org/x/sync"]; got != "v0.1.0" {
			t.Errorf("Go %s: Modules = %v, want golang.org/x/sync v0.1.0", v, f.Modules)
		}
		f.Close()
	}
}

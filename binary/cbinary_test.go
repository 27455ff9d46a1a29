package binary

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const cSource = `#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int utest_add(int a, int b) {
	if (a > 1000)
		return a;
	return a + b;
}

int main(int argc, char **argv) {
	printf("%d\n", utest_add(argc, atoi(argc > 1 ? argv[1] : "2")));
	return 0;
}
`

// TestNonGoELF checks C and C++ programs: symbols from .symtab, from
// .dynsym once stripped, and RET sites against objdump.
func TestNonGoELF(t *testing.T) {
	dir := t.TempDir()
	type prog struct {
		compiler, src, fn string
	}
	progs := []prog{
		{"gcc", "utest.c", "utest_add"},
		{"g++", "utest.cpp", "_Z9utest_addii"},
	}
	for _, p := range progs {
		t.Run(p.compiler, func(t *testing.T) {
			needTool(t, p.compiler)
			src := filepath.Join(dir, p.src)
			if err := os.WriteFile(src, []byte(cSource), 0o644); err != nil {
				t.Fatal(err)
			}
			exe := filepath.Join(dir, p.compiler+".out")
			// -rdynamic exports utest_add in .dynsym, which survives strip.
			if out, err := exec.Command(p.compiler, "-O2", "-rdynamic", "-o", exe, src).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", p.compiler, err, out)
			}
			f := open(t, exe)
			if f.IsGo() || f.GoVersion != "" || f.Version != nil || f.RegABI || f.Stripped {
				t.Errorf("C program analysed as %+v", f)
			}
			fn, err := f.Func(p.fn)
			if err != nil {
				t.Fatal(err)
			}
			if fn.Source != "symtab" || fn.Section != ".text" || len(fn.RetOffsets) == 0 {
				t.Errorf("%s: %+v", p.fn, fn)
			}
			if addr := nmFuncs(t, exe)[p.fn]; addr != fn.Addr {
				t.Errorf("%s at %#x, nm says %#x", p.fn, fn.Addr, addr)
			}
			var got []uint64
			for _, off := range fn.RetOffsets {
				got = append(got, fn.Addr+off)
			}
			if want := objdumpRetsOf(t, exe, p.fn); !equalU64(got, want) {
				t.Errorf("RETs at %x, objdump says %x", got, want)
			}
			if _, err := f.Func("main"); err != nil {
				t.Error(err)
			}
			_, err = f.Func("utest_missing")
			if !errors.Is(err, ErrNoSymbol) || err.Error() != "function utest_missing not found in "+exe+" (not in .symtab or .dynsym; it may be inlined or the name misspelled)" {
				t.Errorf("missing function: %v", err)
			}
			if got := f.Suggest("utest_ad"); len(got) == 0 || got[0] != "utest_add" && got[0] != p.fn {
				t.Logf("Suggest(utest_ad) = %q", got)
			}

			needTool(t, "strip")
			stripped := exe + ".stripped"
			if out, err := exec.Command("strip", "-o", stripped, exe).CombinedOutput(); err != nil {
				t.Fatalf("strip: %v\n%s", err, out)
			}
			sf := open(t, stripped)
			if !sf.Stripped {
				t.Error("Stripped = false after strip")
			}
			sfn, err := sf.Func(p.fn)
			if err != nil {
				t.Fatal(err)
			}
			if sfn.Source != "dynsym" || !sameFunc(fn, sfn) {
				t.Errorf("after strip:\n  %+v\nwant\n  %+v", sfn, fn)
			}
			if _, err := sf.DWARF(); err == nil {
				t.Error("DWARF() succeeded on a stripped C program")
			}
		})
	}

	t.Run("bin-ls", func(t *testing.T) {
		f, err := Open("/bin/ls")
		if err != nil {
			t.Skip(err)
		}
		defer f.Close()
		if f.IsGo() {
			t.Errorf("/bin/ls analysed as Go %s", f.GoVersion)
		}
		if _, err := f.Func("utest_missing"); !errors.Is(err, ErrNoSymbol) {
			t.Errorf("Func on /bin/ls: %v", err)
		}
		f.Funcs("")
	})
}

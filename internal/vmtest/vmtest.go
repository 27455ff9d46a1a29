// Package vmtest runs a test binary inside a QEMU virtual machine booted with
// Debian's stock kernel, for what the host kernel forbids: a kernel in
// lockdown (integrity) refuses bpf_probe_write_user, which trace-context
// injection needs, and lockdown cannot be lifted at run time. Debian's
// kernel, booted without EFI Secure Boot, has lockdown off.
//
// The VM has no disk: an initramfs holds vminit (its first process), the
// test binary and the prebuilt targets, and the VM powers off when the test
// ends. KVM is used when it works; emulation otherwise (slower, ~10 s boot).
package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config says what to run in the VM.
type Config struct {
	// Args runs in the VM; Args[0] is a path inside it.
	Args []string
	Env  []string
	// Files are copied into the VM: path inside → path on the host.
	Files map[string]string
	// Timeout bounds the whole VM run (default 20 minutes).
	Timeout time.Duration
	Logf    func(string, ...any)
}

// Result is what the VM printed and the command's exit status.
type Result struct {
	Output string
	Exit   int
}

// Available says why a VM cannot run here, or nil.
func Available() error {
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y qemu-system-x86 cpio)", tool)
		}
	}
	return nil
}

// Run boots the VM and runs c.
func Run(c Config) (*Result, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if c.Timeout == 0 {
		c.Timeout = 20 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	kernel, err := Kernel(c.Logf)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "uranus-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := buildInit(filepath.Join(root, "init")); err != nil {
		return nil, err
	}
	for in, host := range c.Files {
		if err := copyFile(host, filepath.Join(root, in)); err != nil {
			return nil, err
		}
	}
	cfg, _ := json.Marshal(map[string][]string{"Args": c.Args, "Env": c.Env})
	if err := os.WriteFile(filepath.Join(root, "vmtest.json"), cfg, 0o644); err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	pack := exec.Command("sh", "-c", "find . | cpio -o -H newc > "+initrd)
	pack.Dir = root
	if out, err := pack.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("packing the initramfs: %v: %s", err, out)
	}

	accel := "tcg"
	if kvmWorks() {
		accel = "kvm"
	}
	c.Logf("booting %s with %s", filepath.Base(kernel), accel)
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", accel, "-cpu", "max", "-m", "2048", "-smp", "2",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 oops=panic",
		"-nographic", "-no-reboot")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	c.Logf("VM ran for %s", time.Since(start).Round(time.Second))
	res := &Result{Output: out.String(), Exit: -1}
	if m := regexp.MustCompile(`VMTEST-EXIT (-?\d+)`).FindStringSubmatch(res.Output); m != nil {
		res.Exit, _ = strconv.Atoi(m[1])
		return res, nil
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("the VM did not finish within %s", c.Timeout)
	}
	return res, fmt.Errorf("the VM stopped without reporting an exit status: %v", err)
}

// kvmWorks reports whether to use KVM: only when URANUS_VM_ACCEL=kvm, as
// /dev/kvm can exist in a nested sandbox whose guests never get past the
// firmware (seen on the development machine), and emulation always works.
func kvmWorks() bool {
	return os.Getenv("URANUS_VM_ACCEL") == "kvm"
}

// Kernel returns a Debian kernel image, fetched once with apt-get and kept
// next to the toolchains in the module cache.
func Kernel(logf func(string, ...any)) (string, error) {
	cacheDir, err := cacheDir()
	if err != nil {
		return "", err
	}
	if matches, _ := filepath.Glob(filepath.Join(cacheDir, "vmlinuz-*")); len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	pkg := ""
	if m := regexp.MustCompile(`Depends: (linux-image-\S+)`).FindSubmatch(out); err == nil && m != nil {
		pkg = string(m[1])
	}
	if pkg == "" {
		return "", errors.New("apt-cache knows no linux-image-amd64 (run apt-get update)")
	}
	logf("downloading %s with apt-get", pkg)
	tmp, err := os.MkdirTemp("", "uranus-kernel-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", pkg)
	dl.Dir = tmp
	if b, err := dl.CombinedOutput(); err != nil {
		update := exec.Command("apt-get", "update", "-qq")
		if ub, uerr := update.CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get download %s: %v: %s; apt-get update: %s", pkg, err, b, ub)
		}
		if b, err := dl.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, b)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download %s produced no package", pkg)
	}
	x := filepath.Join(tmp, "x")
	if b, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return "", fmt.Errorf("unpacking %s: %v: %s", debs[0], err, b)
	}
	images, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(images) == 0 {
		return "", fmt.Errorf("%s holds no boot/vmlinuz", debs[0])
	}
	dst := filepath.Join(cacheDir, filepath.Base(images[0]))
	if err := copyFile(images[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

func cacheDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	d := filepath.Join(strings.TrimSpace(string(out)), "cache", "uranus-vm")
	return d, os.MkdirAll(d, 0o755)
}

// buildInit compiles vminit, statically, for the VM's first process.
func buildInit(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/uranus-otel/uranus/internal/vmtest/vminit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building vminit: %v: %s", err, b)
	}
	return nil
}

// CompileTest builds the test binary of pkg (a Go package path), statically,
// to run in the VM.
func CompileTest(pkg, out string) error {
	cmd := exec.Command("go", "test", "-c", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c %s: %v: %s", pkg, err, b)
	}
	return nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

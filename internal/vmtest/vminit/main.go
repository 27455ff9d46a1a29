// Command vminit is the first process of the test VM (see package vmtest):
// it mounts what BPF and the tests need, brings up loopback, runs the
// command described in /vmtest.json, prints its exit status and powers off.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

type config struct {
	Args []string
	Env  []string
}

func main() {
	code := run()
	fmt.Printf("\nVMTEST-EXIT %d\n", code)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() int {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tracefs", "/sys/kernel/tracing", "tracefs"},
		{"debugfs", "/sys/kernel/debug", "debugfs"},
		{"bpf", "/sys/fs/bpf", "bpf"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && m.dir != "/sys/kernel/debug" {
			fmt.Printf("vminit: mounting %s: %v\n", m.dir, err)
		}
	}
	if err := loopbackUp(); err != nil {
		fmt.Println("vminit: loopback:", err)
		return 1
	}
	b, err := os.ReadFile("/vmtest.json")
	if err != nil {
		fmt.Println("vminit:", err)
		return 1
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil || len(c.Args) == 0 {
		fmt.Println("vminit: bad /vmtest.json:", err)
		return 1
	}
	cmd := exec.Command(c.Args[0], c.Args[1:]...)
	cmd.Env = c.Env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Dir = "/tmp"
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Println("vminit:", err)
		return 1
	}
	return 0
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

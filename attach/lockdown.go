package attach

import (
	"os"
	"strings"
	"syscall"
)

// Lockdown returns the kernel lockdown mode: "none", "integrity" or
// "confidentiality"; "" when the kernel does not say. Integrity and above
// forbid bpf_probe_write_user, which trace-context injection needs. The
// mode is read from securityfs, mounted first when it is not.
func Lockdown() string {
	const path = "/sys/kernel/security/lockdown"
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		syscall.Mount("securityfs", "/sys/kernel/security", "securityfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return ""
	}
	s := string(b)
	if i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']'); i >= 0 && j > i {
		return s[i+1 : j]
	}
	return ""
}

// InjectionAllowed tells whether the kernel lets BPF programs write to a
// process's memory (no lockdown, or lockdown unknown).
func InjectionAllowed() bool {
	m := Lockdown()
	return m == "" || m == "none"
}

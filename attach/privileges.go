package attach

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capability is a Linux capability, by its bit in the capability sets.
type capability struct {
	bit  uint
	name string
}

var (
	capSysPtrace = capability{19, "CAP_SYS_PTRACE"}
	capSysAdmin  = capability{21, "CAP_SYS_ADMIN"}
)

// effectiveCaps reads this process's effective capability set; ok is false
// when /proc does not say.
func effectiveCaps() (set uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "CapEff:"); found {
			set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return set, err == nil
		}
	}
	return 0, false
}

func hasCap(c capability) bool {
	set, ok := effectiveCaps()
	return !ok || set&(1<<c.bit) != 0
}

// privilegeAdvice says which capability is missing when the kernel refused
// a BPF or uprobe operation. Creating a uprobe through perf_event_open
// takes CAP_SYS_ADMIN on current kernels (CAP_PERFMON sufficed on some
// older ones), and CAP_SYS_ADMIN also grants what CAP_BPF and CAP_PERFMON
// would: it is the one capability uranus needs for its probes.
func privilegeAdvice() string {
	const how = "run uranus as root, or grant it CAP_SYS_ADMIN, and CAP_SYS_PTRACE for other users' processes " +
		"(in a container: --cap-add or securityContext.capabilities.add)"
	if !hasCap(capSysAdmin) {
		return fmt.Sprintf("uranus lacks %s, which the kernel requires to load BPF programs and create uprobes; %s", capSysAdmin.name, how)
	}
	return "uranus has " + capSysAdmin.name + ", so something else refused: a security module (SELinux, AppArmor), " +
		"a seccomp profile, or kernel.perf_event_paranoid with a restricted user namespace"
}

// PrivilegeWarning is what to tell the user at start-up about processes
// uranus will not see, or "" when nothing is missing.
func PrivilegeWarning() string {
	if hasCap(capSysPtrace) {
		return ""
	}
	return fmt.Sprintf("uranus lacks %s: it can only find and instrument processes of its own user (uid %d); "+
		"grant %s to instrument others", capSysPtrace.name, os.Getuid(), capSysPtrace.name)
}

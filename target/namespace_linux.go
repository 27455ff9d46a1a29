package target

import "golang.org/x/sys/unix"

// PIDNamespace returns the device and inode of uranus's PID namespace, or
// zeros when it is the initial namespace, which sees every process.
func PIDNamespace() (dev, ino uint64) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil || st.Ino == initPIDNamespaceIno {
		return 0, 0
	}
	return st.Dev, st.Ino
}

// initPIDNamespaceIno is the inode of the initial PID namespace
// (PROC_PID_INIT_INO in the kernel).
const initPIDNamespaceIno = 0xEFFFFFFC

package attach

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// listeningPorts lists the local TCP ports that process pid listens on,
// read from /proc: its sockets (fd links "socket:[inode]") matched with
// the LISTEN rows of its network namespace's tcp and tcp6 tables. When its
// fds cannot be read (a sidecar without CAP_SYS_PTRACE, another user's
// process), every port listened on in its network namespace: in a
// container, its pod's or service's.
func listeningPorts(proc string, pid int) ([]uint16, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	var inodes map[string]bool // nil: any
	if err == nil {
		inodes = map[string]bool{}
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	seen := map[uint16]bool{}
	var ports []uint16
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(dir, "net", table))
		if err != nil {
			continue // no IPv6, say
		}
		ps := parseListeners(f, inodes)
		f.Close()
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				ports = append(ports, p)
			}
		}
	}
	if len(ports) == 0 && inodes == nil {
		return nil, err
	}
	return ports, nil
}

// parseListeners reads a /proc/net/tcp{,6} table and returns the local
// ports of its LISTEN rows whose socket inode is in inodes. A row is
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
//
// with the address as hex IP:port and the state as hex (0A is LISTEN).
func parseListeners(r io.Reader, inodes map[string]bool) []uint16 {
	var out []uint16
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" || inodes != nil && !inodes[f[9]] {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && p != 0 {
			out = append(out, uint16(p))
		}
	}
	return out
}

// listen makes the sockets that process pid accepts from now on on its
// listening ports have their TCP options read (bpf/wire.c): the context a
// traced client sends over TLS. Best effort: a port the scan misses is
// added by the server's uprobe at its first TLS request.
func (w *wire) listen(pid int) []uint16 {
	ports, err := listeningPorts("/proc", pid)
	if err != nil {
		return nil
	}
	one := uint8(1)
	for _, p := range ports {
		w.objs.Ports.Put(p, one)
	}
	return ports
}

// adopt enrolls the TCP connections that process pid opened before it was
// traced, which the sockops program never saw being made: each socket is
// taken with pidfd_getfd and put into the socket map, so that the sk_msg
// program sees what the process sends on it from now on. Only connections
// it made (not those accepted on its listening ports) and established
// ones; the process's own descriptors are untouched, and the copies are
// closed at once. Returns how many it enrolled. A connection adopted
// mid-request is safe: the sk_msg program changes only messages that begin
// a request (HTTP/1) or are whole frames (HTTP/2).
func (w *wire) adopt(pid int) (int, error) {
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return 0, err
	}
	listening := map[uint16]bool{}
	if ports, err := listeningPorts("/proc", pid); err == nil {
		for _, p := range ports {
			listening[p] = true
		}
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	n := 0
	for _, e := range fds {
		l, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			continue
		}
		if w.adoptable(fd, listening) {
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err == nil && w.objs.Socks.Update(cookie, uint64(fd), ebpf.UpdateNoExist) == nil {
				n++
			}
		}
		unix.Close(fd)
	}
	return n, nil
}

// adoptable says whether fd is an established TCP connection that its
// process made (its local port is none of listening).
func (w *wire) adoptable(fd int, listening map[uint16]bool) bool {
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
		return false
	}
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return false
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != unix.BPF_TCP_ESTABLISHED {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return !listening[uint16(a.Port)]
	case *unix.SockaddrInet6:
		return !listening[uint16(a.Port)]
	}
	return false
}

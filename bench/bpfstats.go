package main

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

// enableBPFStats turns on the kernel's run-time accounting of BPF programs
// (run_cnt, run_time_ns) until the returned Closer is closed. It costs two
// clock reads per program run, and it is what lets the benchmark count the
// hits and the in-kernel time of any tool's programs, including a sidecar
// that does not report them.
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics: %w", err)
	}
	return c, nil
}

// progStat is one BPF program's kernel statistics.
type progStat struct {
	name     string
	runs, ns uint64
}

// progStats returns run_cnt and run_time_ns of each BPF program pid holds
// open, by program ID (the fdinfo of a program descriptor lists them).
func progStats(pid int) (map[uint64]progStat, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]progStat{}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		var id uint64
		var st progStat
		isProg := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "prog_type": // a link's fdinfo names its program too, without counters
				isProg = true
			case "prog_id":
				id = n
			case "run_cnt":
				st.runs = n
			case "run_time_ns":
				st.ns = n
			}
		}
		f.Close()
		if isProg {
			out[id] = st
		}
	}
	return out, nil
}

// progDelta is what each program did between two snapshots, by name
// (programs of the same name, e.g. one per target, are summed).
func progDelta(before, after map[uint64]progStat) map[string]progStat {
	out := map[string]progStat{}
	for id, a := range after {
		b := before[id]
		name := progName(id)
		s := out[name]
		s.name = name
		s.runs += a.runs - b.runs
		s.ns += a.ns - b.ns
		out[name] = s
	}
	return out
}

func progName(id uint64) string {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return fmt.Sprintf("prog%d", id)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil || info.Name == "" {
		return fmt.Sprintf("prog%d", id)
	}
	return info.Name
}

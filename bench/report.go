package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// results are every run of one benchmark invocation.
type results struct {
	opts     options
	configs  []string
	skipped  []string
	runs     []*result
	started  time.Time
	finished time.Time
}

// Targets from issue 7.
const (
	targetLatencyRatio = 1.3      // uranus's added p50 ÷ the floor's
	targetCPUPercent   = 2.0      // % of one core per 1,000 spans/s
	targetRSS          = 64 << 20 // bytes
	targetRSSRun       = 60 * time.Second

	// saturatedBusy is the share of its core (%) below which the server
	// was not the bottleneck of the saturation phase.
	saturatedBusy = 85
)

// of returns the runs of cfg by round.
func (rs *results) of(cfg string) map[int]*result {
	m := map[int]*result{}
	for _, r := range rs.runs {
		if r.Config == cfg {
			m[r.Round] = r
		}
	}
	return m
}

// perRound evaluates f for every round in which both cfg and ref ran (ref
// "" for none) and returns the median.
func (rs *results) perRound(cfg, ref string, f func(c, ref *result) (float64, bool)) (float64, bool) {
	cs, refs := rs.of(cfg), rs.of(ref)
	var vals []float64
	for round, c := range cs {
		var rr *result
		if ref != "" {
			if rr = refs[round]; rr == nil {
				continue
			}
		}
		if v, ok := f(c, rr); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return 0, false
	}
	slices.Sort(vals)
	if len(vals)%2 == 1 {
		return vals[len(vals)/2], true
	}
	return (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2, true
}

func (rs *results) median(cfg string, f func(*result) float64) (float64, bool) {
	return rs.perRound(cfg, "", func(c, _ *result) (float64, bool) { return f(c), true })
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// addedRatio is cfg's added p50 latency over the floor's in one round.
func addedRatio(c, b, f *result) (float64, bool) {
	fa := us(f.P50 - b.P50)
	if fa <= 0 {
		return 0, false
	}
	return us(c.P50-b.P50) / fa, true
}

func (rs *results) addedOverFloor(cfg string) (float64, bool) {
	bs, fs := rs.of(cfgBaseline), rs.of(cfgFloor)
	return rs.perRound(cfg, "", func(c, _ *result) (float64, bool) {
		b, f := bs[c.Round], fs[c.Round]
		if b == nil || f == nil {
			return 0, false
		}
		return addedRatio(c, b, f)
	})
}

// cpuPercentPer1k is the sidecar's CPU as % of one core per 1,000 spans/s:
// CPU-seconds per span × 1000 × 100.
func cpuPercentPer1k(cpu float64, spans int) (float64, bool) {
	if spans <= 0 {
		return 0, false
	}
	return cpu / float64(spans) * 1e5, true
}

func (r *result) oneLine() string {
	s := fmt.Sprintf("%7.0f req/s (server %3.0f%% of its core, others %3.0f%%; harness %.1fµs/req)  p50 %6.1fµs  p99 %7.1fµs",
		r.satRPS(), r.ServerCPU/r.SatTime.Seconds()*100, r.OtherCPU/r.SatTime.Seconds()*100,
		r.LoadCPU/float64(max(r.SatRequests, 1))*1e6, us(r.P50), us(r.P99))
	if r.HitsKnown && r.Sent > 0 {
		s += fmt.Sprintf("  hits/req %.2f", float64(r.Hits)/float64(r.Sent))
	}
	if r.BPFKnown && r.SatRequests+r.PacedSent > 0 {
		n := float64(r.SatRequests + r.PacedSent)
		s += fmt.Sprintf("  BPF %.2f runs %.2fµs/req", float64(r.BPFRuns)/n, float64(r.BPFNs)/n/1000)
	}
	if len(r.BPFProgs) > 1 && r.SatRequests+r.PacedSent > 0 {
		n := float64(r.SatRequests + r.PacedSent)
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(r.BPFProgs)) {
			p := r.BPFProgs[name]
			if p.runs > 0 {
				parts = append(parts, fmt.Sprintf("%s %.2f×%.2fµs", name, float64(p.runs)/n, float64(p.ns)/float64(p.runs)/1000))
			}
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if r.Exports {
		s += fmt.Sprintf("  spans %d/%d", r.SinkSpans, r.Sent)
	}
	if r.LostKnown {
		s += fmt.Sprintf("  lost %d", r.Lost)
	}
	if r.Sidecar {
		p, _ := cpuPercentPer1k(r.SidecarSat, r.SatRequests)
		s += fmt.Sprintf("  sidecar %.2f%%/1k spans/s  peak rss %.1fMiB (at exit: %s)", p, float64(r.SidecarRSS)/(1<<20), r.SidecarMem)
	}
	return s
}

// table prints a Markdown table with aligned columns.
func table(w io.Writer, head []string, rows [][]string) {
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len([]rune(h))
	}
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			} else {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		if i == 0 {
			sep[i] = strings.Repeat("-", width[i])
		} else {
			sep[i] = strings.Repeat("-", width[i]-1) + ":"
		}
	}
	line(sep)
	for _, row := range rows {
		line(row)
	}
}

func fmtOpt(v float64, ok bool, format string) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

func (rs *results) report(w io.Writer) {
	o := rs.opts
	fmt.Fprintf(w, "\n## uranus benchmark, %s\n\n", rs.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- machine: %s, %d CPUs, Linux %s\n", cpuModel(), runtime.NumCPU(), kernelRelease())
	fmt.Fprintf(w, "- server and harness built with %s; server pinned to CPU %d (GOMAXPROCS 1), load generator, OTLP sink and sidecars to CPU %d\n",
		runtime.Version(), o.ServerCPU, o.LoadCPU)
	fmt.Fprintf(w, "- %d rounds × %d configurations, interleaved; per run: %s warm-up, %s saturation with %d keep-alive connections, %s at %d req/s on one connection\n",
		o.Rounds, len(rs.configs), warmup, o.Duration, o.Conns, o.Duration, o.Rate)
	fmt.Fprintf(w, "- ratios and differences are taken within a round, then the median over rounds; took %s\n",
		rs.finished.Sub(rs.started).Round(time.Second))
	for _, c := range rs.configs {
		fmt.Fprintf(w, "- %s: %s\n", c, configDoc[c])
	}
	for _, s := range rs.skipped {
		fmt.Fprintf(w, "- %s\n", s)
	}

	fmt.Fprintf(w, "\n### Cost on the server\n\n")
	var rows [][]string
	for _, c := range rs.configs {
		rps, _ := rs.median(c, (*result).satRPS)
		vsBase, okB := rs.perRound(c, cfgBaseline, func(c, b *result) (float64, bool) { return c.satRPS() / b.satRPS(), true })
		vsFloor, okF := rs.perRound(c, cfgFloor, func(c, f *result) (float64, bool) { return c.satRPS() / f.satRPS(), true })
		cpu, _ := rs.median(c, func(r *result) float64 { return r.ServerCPU / float64(max(r.SatRequests, 1)) * 1e6 })
		busy, _ := rs.median(c, func(r *result) float64 { return r.ServerCPU / r.SatTime.Seconds() * 100 })
		p50, _ := rs.median(c, func(r *result) float64 { return us(r.P50) })
		p99, _ := rs.median(c, func(r *result) float64 { return us(r.P99) })
		p50x, okX := rs.perRound(c, cfgBaseline, func(c, b *result) (float64, bool) { return us(c.P50) / us(b.P50), true })
		added, okA := rs.perRound(c, cfgBaseline, func(c, b *result) (float64, bool) { return us(c.P50 - b.P50), true })
		overFloor, okO := rs.addedOverFloor(c)
		runs, bpfUS := rs.bpfPerRequest(c)
		rows = append(rows, []string{c, rs.hitsPerRequest(c), runs, bpfUS,
			fmt.Sprintf("%.0f", rps), fmtOpt(vsBase, okB, "%.2f"), fmtOpt(vsFloor, okF, "%.2f"),
			fmt.Sprintf("%.0f%%", busy), fmt.Sprintf("%.1f", cpu),
			fmt.Sprintf("%.1f", p50), fmt.Sprintf("%.1f", p99), fmtOpt(p50x, okX, "%.2f"),
			fmtOpt(added, okA, "%+.1f"), fmtOpt(overFloor, okO, "%.2f")})
	}
	table(w, []string{"config", "uprobe hits/req", "BPF runs/req", "BPF µs/req", "req/s at saturation", "÷ baseline", "÷ floor",
		"server core busy", "server CPU µs/req", "p50 µs", "p99 µs", "p50 ÷ baseline", "added p50 µs", "added ÷ floor's added"}, rows)

	rows = nil
	for _, c := range rs.configs {
		runs := rs.of(c)
		var spans uint64
		var sent int
		var lost uint64
		lostKnown, exports, sidecar := false, false, false
		var rss uint64
		var life time.Duration
		for _, r := range runs {
			spans += r.SinkSpans
			sent += r.Sent
			lost += r.Lost
			lostKnown = lostKnown || r.LostKnown
			exports = exports || r.Exports
			sidecar = sidecar || r.Sidecar
			rss = max(rss, r.SidecarRSS)
			life = max(life, r.SidecarLife)
		}
		if !exports {
			continue
		}
		row := []string{c, fmt.Sprintf("%d / %d", spans, sent), "–", "–", "–", "–", "–", "–"}
		if lostKnown {
			row[2] = fmt.Sprint(lost)
		}
		if sidecar {
			sat, okS := rs.median(c, func(r *result) float64 { return r.SidecarSat / float64(max(r.SatRequests, 1)) * 1e4 })
			pace, okP := rs.median(c, func(r *result) float64 { return r.SidecarPace / float64(max(r.PacedSent, 1)) * 1e4 })
			row[3] = fmtOpt(sat, okS, "%.3f")
			row[4] = fmtOpt(pace, okP, "%.3f")
			row[5] = fmtOpt(sat*10, okS, "%.2f%%") + " / " + fmtOpt(pace*10, okP, "%.2f%%")
			row[6] = fmt.Sprintf("%.1f", float64(rss)/(1<<20))
			row[7] = life.Round(time.Second).String()
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		fmt.Fprintf(w, "\n### Span pipeline\n\n")
		table(w, []string{"config", "spans at sink / requests sent", "events lost",
			"sidecar CPU-s per 10k spans (saturation)", fmt.Sprintf("… at %d req/s", o.Rate),
			"% of a core per 1k spans/s (sat / paced)", "sidecar peak RSS MiB", "longest sidecar run"}, rows)
	}

	var idle []string
	for _, r := range rs.runs {
		if busy := r.ServerCPU / r.SatTime.Seconds() * 100; busy < saturatedBusy {
			idle = append(idle, fmt.Sprintf("%s round %d: %.0f%%, others %.0f%%",
				r.Config, r.Round+1, busy, r.OtherCPU/r.SatTime.Seconds()*100))
		}
	}
	if len(idle) > 0 {
		fmt.Fprintf(w, "\nNote: the server had less than %d%% of its core during saturation in %d of %d runs (%s). "+
			"Where other processes took the rest, the machine was not quiet and the req/s figures are theirs as much as the server's; "+
			"otherwise the load generator's core was the limit.\n",
			saturatedBusy, len(idle), len(rs.runs), strings.Join(idle, "; "))
	}

	if len(rs.of(cfgCall)) > 0 && len(rs.of(cfgCallWire)) > 0 {
		ratio, ok := rs.perRound(cfgCallWire, cfgCall, func(c, b *result) (float64, bool) { return c.satRPS() / b.satRPS(), true })
		_, wireUS := rs.bpfPerRequest(cfgCallWire)
		_, offUS := rs.bpfPerRequest(cfgCall)
		fmt.Fprintf(w, "\nTrace context on the wire (%s against %s): req/s at saturation %s×, BPF µs/req %s against %s.\n",
			cfgCallWire, cfgCall, fmtOpt(ratio, ok, "%.2f"), wireUS, offUS)
	}

	if len(rs.of(cfgUranusExe)) > 0 && len(rs.of(cfgUranus)) > 0 {
		ratio, ok := rs.perRound(cfgUranusExe, cfgUranus, func(c, b *result) (float64, bool) { return c.satRPS() / b.satRPS(), true })
		exeRuns, exeUS := rs.bpfPerRequest(cfgUranusExe)
		pidRuns, pidUS := rs.bpfPerRequest(cfgUranus)
		fmt.Fprintf(w, "\nProbes on the file (%s against %s, --pid): req/s at saturation %s×, probe hits/req %s against %s, "+
			"BPF runs/req %s against %s, BPF µs/req %s against %s.\n",
			cfgUranusExe, cfgUranus, fmtOpt(ratio, ok, "%.2f"), rs.hitsPerRequest(cfgUranusExe), rs.hitsPerRequest(cfgUranus),
			exeRuns, pidRuns, exeUS, pidUS)
	}

	for _, cfg := range []string{cfgUranus, cfgUranusB} {
		vs := rs.verdicts(cfg)
		if len(vs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### Targets (issue 7), %s\n\n", cfg)
		for _, v := range vs {
			fmt.Fprintf(w, "- %s\n", v.String())
		}
	}
	fmt.Fprintln(w)
}

// bpfPerRequest is the kernel's count of program runs and their time per
// request in the measured phases.
func (rs *results) bpfPerRequest(cfg string) (runs, nsPerReq string) {
	var r, ns uint64
	var reqs int
	for _, x := range rs.of(cfg) {
		if x.BPFKnown {
			r += x.BPFRuns
			ns += x.BPFNs
			reqs += x.SatRequests + x.PacedSent
		}
	}
	if reqs == 0 {
		if cfg == cfgBaseline || cfg == cfgOTelHTTP {
			return "0", "0"
		}
		return "n/a", "n/a"
	}
	return fmt.Sprintf("%.2f", float64(r)/float64(reqs)), fmt.Sprintf("%.2f", float64(ns)/float64(reqs)/1000)
}

func (rs *results) hitsPerRequest(cfg string) string {
	var hits uint64
	var sent int
	known := false
	for _, r := range rs.of(cfg) {
		if r.HitsKnown {
			known = true
			hits += r.Hits
			sent += r.Sent
		}
	}
	switch {
	case cfg == cfgBaseline || cfg == cfgOTelHTTP:
		return "0"
	case !known || sent == 0:
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(hits)/float64(sent))
}

type verdict struct {
	pass   bool
	target string
	detail string
}

func (v verdict) String() string {
	s := "FAIL"
	if v.pass {
		s = "PASS"
	}
	return fmt.Sprintf("%s  %s: %s", s, v.target, v.detail)
}

// verdicts judges cfg (uranus or uranus-b) against the targets; none when
// it did not run.
func (rs *results) verdicts(cfg string) []verdict {
	runs := rs.of(cfg)
	if len(runs) == 0 {
		return nil
	}
	var out []verdict

	if ratio, ok := rs.addedOverFloor(cfg); ok {
		out = append(out, verdict{ratio <= targetLatencyRatio,
			fmt.Sprintf("uranus's added p50 latency ≤ %.1f× the floor's", targetLatencyRatio),
			fmt.Sprintf("%.2f× (median over rounds)", ratio)})
	} else {
		out = append(out, verdict{false, "uranus's added p50 latency vs the floor's",
			"not measurable: needs baseline and floor in the same rounds, with the floor adding latency"})
	}

	var lost, spans uint64
	var sent int
	equal := true
	for _, r := range runs {
		lost += r.Lost
		spans += r.SinkSpans
		sent += r.Sent
		equal = equal && r.SinkSpans == uint64(r.Sent)
	}
	out = append(out, verdict{lost == 0 && equal,
		"0 lost events and spans received == requests sent, at saturation of a one-core server",
		fmt.Sprintf("%d lost, %d spans for %d requests", lost, spans, sent)})

	worst := 0.0
	var parts []string
	for _, phase := range []struct {
		name string
		f    func(*result) (float64, bool)
	}{
		{"at saturation", func(r *result) (float64, bool) { return cpuPercentPer1k(r.SidecarSat, r.SatRequests) }},
		{fmt.Sprintf("at %d req/s", rs.opts.Rate), func(r *result) (float64, bool) { return cpuPercentPer1k(r.SidecarPace, r.PacedSent) }},
	} {
		v, ok := rs.perRound(cfg, "", func(c, _ *result) (float64, bool) { return phase.f(c) })
		if ok {
			worst = max(worst, v)
			parts = append(parts, fmt.Sprintf("%.2f%% %s", v, phase.name))
		}
	}
	out = append(out, verdict{len(parts) > 0 && worst <= targetCPUPercent,
		fmt.Sprintf("sidecar CPU ≤ %.0f%% of one core per 1,000 spans/s", targetCPUPercent),
		strings.Join(parts, ", ")})

	var rss uint64
	var life time.Duration
	for _, r := range runs {
		rss = max(rss, r.SidecarRSS)
		life = max(life, r.SidecarLife)
	}
	detail := fmt.Sprintf("%.1f MiB peak over runs of up to %s", float64(rss)/(1<<20), life.Round(time.Second))
	if life < targetRSSRun {
		detail += fmt.Sprintf(" (shorter than the target's %s: use -duration %s)", targetRSSRun, (targetRSSRun / 2).Round(time.Second))
	}
	out = append(out, verdict{rss > 0 && rss <= targetRSS, "sidecar peak RSS ≤ 64 MiB in a 60 s run", detail})
	return out
}

func (rs *results) failed() bool {
	for _, v := range rs.verdicts(cfgUranus) {
		if !v.pass {
			return true
		}
	}
	return false
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

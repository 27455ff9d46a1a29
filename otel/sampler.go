package otel

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Sampler is OTEL_TRACES_SAMPLER as the BPF programs apply it when a span
// starts. Deciding there, rather than only in the SDK, lets a trace's
// children and the traceparent sent downstream carry the same decision, and
// spares the ring buffer the spans that would be dropped. The SDK applies
// the same sampler again to what arrives and, for the same trace id, reaches
// the same verdict.
type Sampler struct {
	// ParentBased: a span with a parent follows the parent's sampled flag.
	ParentBased bool
	// Bound: a root span is sampled when the low 63 bits of its trace id,
	// read big-endian, are below it; ^0 samples all, 0 none. This is the
	// OTel SDK's TraceIDRatioBased rule.
	Bound       uint64
	Description string
}

// Constants are the BPF constants that carry s (see bpf/uranus.h).
func (s Sampler) Constants() map[string]uint64 {
	pb := uint64(0)
	if s.ParentBased {
		pb = 1
	}
	return map[string]uint64{"sampler_bound": s.Bound, "sampler_parent_based": pb}
}

// SamplerFromEnv reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
func SamplerFromEnv() (Sampler, error) {
	name := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER"))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (uint64, string, error) {
		if arg == "" {
			return ^uint64(0), "1", nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, "", fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		if f >= 1 {
			return ^uint64(0), arg, nil
		}
		return uint64(f * (1 << 63)), arg, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return Sampler{ParentBased: true, Bound: ^uint64(0), Description: "parentbased_always_on"}, nil
	case "always_on":
		return Sampler{Bound: ^uint64(0), Description: name}, nil
	case "always_off":
		return Sampler{Description: name}, nil
	case "parentbased_always_off":
		return Sampler{ParentBased: true, Description: name}, nil
	case "traceidratio", "parentbased_traceidratio":
		b, r, err := ratio()
		if err != nil {
			return Sampler{}, err
		}
		return Sampler{ParentBased: name != "traceidratio", Bound: b, Description: name + " " + r}, nil
	}
	return Sampler{}, fmt.Errorf("OTEL_TRACES_SAMPLER=%q is not supported by uranus "+
		"(use always_on, always_off, traceidratio or their parentbased_ forms)", name)
}

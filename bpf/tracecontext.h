// tracecontext.h — W3C Trace Context in BPF: parsing an incoming
// traceparent into a span_ctx, and writing one for an outgoing request.
//
//   traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
#pragma once

#include "uranus.h"

#define TRACEPARENT_LEN 55

static __always_inline int hex_value(u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; // upper case is invalid in traceparent
}

// hex_decode turns 2*n hex digits into n bytes; 0 on success.
static __always_inline int hex_decode(const u8 *src, u8 *dst, int n)
{
	for (int i = 0; i < n; i++) {
		int hi = hex_value(src[2 * i]), lo = hex_value(src[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		dst[i] = (hi << 4) | lo;
	}
	return 0;
}

static __always_inline int all_zero(const u8 *b, int n)
{
	for (int i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

// parse_traceparent reads the header value at ptr (len bytes) into sc.
// Returns 0 for a valid value. Versions other than 00 are accepted when the
// first 55 characters parse (the spec's forward compatibility), except ff.
static __always_inline int parse_traceparent(u64 ptr, s64 len, struct span_ctx *sc)
{
	u8 v[TRACEPARENT_LEN];
	if (len < TRACEPARENT_LEN || ptr == 0)
		return -1;
	if (bpf_probe_read_user(v, sizeof(v), (void *)ptr))
		return -1;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-')
		return -1;
	u8 version, flags;
	if (hex_decode(v, &version, 1) || version == 0xff || (version == 0 && len != TRACEPARENT_LEN))
		return -1;
	if (hex_decode(v + 3, sc->trace_id, 16) || hex_decode(v + 36, sc->span_id, 8) || hex_decode(v + 53, &flags, 1))
		return -1;
	if (all_zero(sc->trace_id, 16) || all_zero(sc->span_id, 8))
		return -1;
	sc->flags = flags & SPAN_FLAG_SAMPLED;
	return 0;
}

static __always_inline void hex_encode(const u8 *src, u8 *dst, int n)
{
	const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 0xf];
	}
}

#define TRACEPARENT_HEADER_LEN (13 + TRACEPARENT_LEN + 2)

// format_traceparent_header writes "Traceparent: 00-…-…-0x\r\n" for the
// span (trace_id, span_id, flags) into out.
static __always_inline void format_traceparent_header(u8 out[TRACEPARENT_HEADER_LEN], const u8 *trace_id,
						      const u8 *span_id, u8 flags)
{
	__builtin_memcpy(out, "Traceparent: 00-", 16);
	hex_encode(trace_id, out + 16, 16);
	out[48] = '-';
	hex_encode(span_id, out + 49, 8);
	out[65] = '-';
	out[66] = '0';
	out[67] = (flags & SPAN_FLAG_SAMPLED) ? '1' : '0';
	out[68] = '\r';
	out[69] = '\n';
}

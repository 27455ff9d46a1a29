// go_header.h — finding a few keys in a net/http.Header, a Go
// map[string][]string, without calling Go: the map is scanned slot by slot,
// since BPF cannot compute Go's hash. Both map implementations are read:
//
//  * swiss tables (Go >= 1.24): Map{dirPtr, dirLen}; dirLen 0 means dirPtr
//    is a single group, else it points to dirLen *table, each with a groups
//    array. A group is 8 control bytes (high bit set: empty or deleted) and
//    8 interleaved slots {key string, elem []string} of 16+24 bytes.
//  * hmap buckets (Go < 1.24, or GOEXPERIMENT=noswissmap): 2^B buckets of
//    8 tophash bytes (< 5: empty or evacuated), 8 keys, 8 elems, then an
//    overflow pointer; oldbuckets while the map grows.
//
// Slot layouts follow from the key and element sizes, not from a struct
// with members, so they are constants here; struct members come from the
// offsets table. Scans are bounded: headers with more entries than the
// bounds allow are partly unseen, which only means a missed header.
#pragma once

#include "uranus.h"

volatile const u64 off_hmap_b;
volatile const u64 off_hmap_buckets;
volatile const u64 off_hmap_oldbuckets;
volatile const u64 off_swiss_dirptr;
volatile const u64 off_swiss_dirlen;
volatile const u64 off_table_groups;    // table.groups (a groupsReference)
volatile const u64 off_groups_data;     // groupsReference.data
volatile const u64 off_groups_mask;     // groupsReference.lengthMask

#define GO_STRING_SIZE 16
#define GO_SLICE_SIZE 24
#define SWISS_SLOT_SIZE (GO_STRING_SIZE + GO_SLICE_SIZE)
#define SWISS_GROUP_SIZE (8 + 8 * SWISS_SLOT_SIZE)
#define HMAP_KEYS 8
#define HMAP_ELEMS (HMAP_KEYS + 8 * GO_STRING_SIZE)
#define HMAP_OVERFLOW (HMAP_ELEMS + 8 * GO_SLICE_SIZE)
#define HMAP_BUCKET_SIZE (HMAP_OVERFLOW + 8)

#define MAX_SWISS_TABLES 4
#define MAX_SWISS_GROUPS 4   // per table: 32 slots
#define MAX_HMAP_BUCKETS 8   // B <= 3: up to 52 entries before growth
#define MAX_HMAP_CHAIN 2     // a bucket and one overflow bucket

// The canonical (textproto) header names uranus reads.
enum header_key {
	HDR_TRACEPARENT,
	HDR_TRACESTATE,
	HDR_USER_AGENT,
	HDR_COUNT,
};

// header_refs holds where each wanted header's first value lives.
struct header_refs {
	u64 ptr[HDR_COUNT];
	s64 len[HDR_COUNT];
};

static __always_inline int bytes_equal(const u8 *a, const char *b, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != (u8)b[i])
			return 0;
	return 1;
}

// header_slot looks at one map entry and records it in out when its key is
// wanted (want is a bit set of enum header_key). A global function: the
// verifier checks it once instead of at each of the ~190 slots a scan
// visits, which took a quarter of a second per load.
__attribute__((noinline)) int header_slot(u64 key_addr, u64 elem_addr, u32 want, struct header_refs *out)
{
	if (!out)
		return 0;
	struct go_str k;
	if (bpf_probe_read_user(&k, sizeof(k), (void *)key_addr))
		return 0;
	int which = -1;
	u8 name[11];
	if (k.len == 11 && (want & (1 << HDR_TRACEPARENT))) {
		if (bpf_probe_read_user(name, 11, (void *)k.ptr) == 0 && bytes_equal(name, "Traceparent", 11))
			which = HDR_TRACEPARENT;
	} else if (k.len == 10 && (want & ((1 << HDR_TRACESTATE) | (1 << HDR_USER_AGENT)))) {
		if (bpf_probe_read_user(name, 10, (void *)k.ptr) == 0) {
			if ((want & (1 << HDR_TRACESTATE)) && bytes_equal(name, "Tracestate", 10))
				which = HDR_TRACESTATE;
			else if ((want & (1 << HDR_USER_AGENT)) && bytes_equal(name, "User-Agent", 10))
				which = HDR_USER_AGENT;
		}
	}
	if (which < 0)
		return 0;
	struct {
		u64 ptr;
		s64 len, cap;
	} values;
	struct go_str v;
	if (bpf_probe_read_user(&values, sizeof(values), (void *)elem_addr) || values.len <= 0)
		return 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)values.ptr))
		return 0;
	if (which == HDR_TRACEPARENT) {
		out->ptr[HDR_TRACEPARENT] = v.ptr;
		out->len[HDR_TRACEPARENT] = v.len;
	} else if (which == HDR_TRACESTATE) {
		out->ptr[HDR_TRACESTATE] = v.ptr;
		out->len[HDR_TRACESTATE] = v.len;
	} else {
		out->ptr[HDR_USER_AGENT] = v.ptr;
		out->len[HDR_USER_AGENT] = v.len;
	}
	return 1;
}

static __always_inline void swiss_group(u64 group, u32 want, struct header_refs *out)
{
	u8 ctrl[8];
	if (bpf_probe_read_user(ctrl, sizeof(ctrl), (void *)group))
		return;
	for (int i = 0; i < 8; i++) {
		if (ctrl[i] & 0x80) // empty or deleted
			continue;
		u64 slot = group + 8 + i * SWISS_SLOT_SIZE;
		header_slot(slot, slot + GO_STRING_SIZE, want, out);
	}
}

static __always_inline void hmap_bucket(u64 bucket, u32 want, struct header_refs *out)
{
	for (int depth = 0; depth < MAX_HMAP_CHAIN && bucket; depth++) {
		u8 tophash[8];
		if (bpf_probe_read_user(tophash, sizeof(tophash), (void *)bucket))
			return;
		for (int i = 0; i < 8; i++) {
			if (tophash[i] < 5) // empty, or evacuated to the new buckets
				continue;
			header_slot(bucket + HMAP_KEYS + i * GO_STRING_SIZE, bucket + HMAP_ELEMS + i * GO_SLICE_SIZE, want, out);
		}
		bucket = read_u64(bucket, HMAP_OVERFLOW);
	}
}

// scan_header fills out with the wanted headers of the Header map at m (a
// pointer to the runtime map). Absent headers keep ptr 0.
static __always_inline void scan_header(u64 m, u32 want, struct header_refs *out)
{
	if (m == 0)
		return;
	if (off_swiss_dirptr != OFFSET_ABSENT) {
		u64 dir = read_u64(m, off_swiss_dirptr);
		s64 dirlen = (s64)read_u64(m, off_swiss_dirlen);
		if (dir == 0)
			return;
		if (dirlen == 0) {
			swiss_group(dir, want, out);
			return;
		}
		u64 last = 0;
		for (int t = 0; t < MAX_SWISS_TABLES && t < dirlen; t++) {
			u64 table = read_u64(dir, t * 8);
			if (table == 0 || table == last) // directory entries share tables
				continue;
			last = table;
			u64 groups = read_u64(table, off_table_groups + off_groups_data);
			u64 mask = read_u64(table, off_table_groups + off_groups_mask);
			for (int g = 0; g < MAX_SWISS_GROUPS && g <= mask; g++)
				swiss_group(groups + g * SWISS_GROUP_SIZE, want, out);
		}
		return;
	}
	if (off_hmap_buckets == OFFSET_ABSENT)
		return;
	u8 b = 0;
	if (bpf_probe_read_user(&b, 1, (void *)(m + off_hmap_b)))
		return;
	u64 nbuckets = 1ULL << (b & 0x3f);
	u64 buckets = read_u64(m, off_hmap_buckets);
	for (int i = 0; i < MAX_HMAP_BUCKETS && i < nbuckets; i++)
		hmap_bucket(buckets + i * HMAP_BUCKET_SIZE, want, out);
	// While the map grows, entries not yet moved are in the old buckets.
	u64 old = read_u64(m, off_hmap_oldbuckets);
	for (int i = 0; old && i < MAX_HMAP_BUCKETS && i < nbuckets / 2; i++)
		hmap_bucket(old + i * HMAP_BUCKET_SIZE, want, out);
}

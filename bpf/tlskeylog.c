//go:build ignore

// crypto/tls key log: the secrets of every handshake, for uranus tls-dump
// --keylog, which writes them as NSS key log lines (instrumentors/gotls,
// keylog.go). One probe hit per secret: one per TLS 1.2 handshake, four per
// TLS 1.3 handshake.
//
// crypto/tls hands every secret it derives to
//
//   func (c *Config) writeKeyLog(label string, clientRandom, secret []byte) error
//
// in the client and server handshakes of both versions, and that function
// returns at once when Config.KeyLogWriter is nil: it is called whether or
// not the program logs keys (Go 1.13 to 1.27), and is too big to be inlined.
// Its entry sees the arguments as nine words:
//
//   word 0: c; 1, 2: label's pointer and length;
//   3, 4, 5: clientRandom's pointer, length, capacity; 6, 7, 8: secret's.
//
// go_arg reads word i from RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11 under
// the register ABI (Go >= 1.17) and from SP+8*(i+1) under the stack ABI.
//
// The program only reads target memory. Nothing is recorded unless user
// space set keylog_records (only tls-dump --keylog does): the records carry
// secrets, and never become spans.
#include "uranus.h"

volatile const u8 keylog_records;

#define STAT_KEYLOG_OFF STAT_EXTRA
#define STAT_KEYLOG_LONG STAT_EXTRA2

#define KEYLOG_LABEL 32
#define KEYLOG_RANDOM 32
#define KEYLOG_SECRET 64

struct keylog_event {
	struct event_header h;
	u32 label_len;   // the lengths as the target had them: a longer one
	u32 random_len;  // than its array is cut, and user space drops the
	u32 secret_len;  // record
	u32 _pad;
	u8 label[KEYLOG_LABEL];
	u8 random[KEYLOG_RANDOM];
	u8 secret[KEYLOG_SECRET];
};
EXPORT_TYPE(keylog_event);

SEC("uprobe")
int keylog_entry(struct pt_regs *ctx)
{
	stat_inc(STAT_ENTRY);
	if (!keylog_records) {
		stat_inc(STAT_KEYLOG_OFF);
		return 0;
	}
	u64 goid = go_goid(ctx);
	if (goid == 0)
		return 0;
	struct keylog_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RINGBUF_FULL);
		return 0;
	}
	// Start from zeros: the ring's memory holds earlier records (a tap's
	// plaintext), and the arrays are not always filled.
	volatile u64 *w = (volatile u64 *)e; // volatile: clang would make the loop a memset, which BPF lacks
#pragma unroll
	for (int i = 0; i < sizeof(*e) / 8; i++)
		w[i] = 0;
	e->h.start_ns = e->h.end_ns = bpf_ktime_get_ns();
	e->h.goid = goid;
	e->h.source = source_id;
	e->h.pid = (u32)current_pid();
	e->label_len = copy_go_bytes(e->label, sizeof(e->label), go_arg(ctx, 1), (s64)go_arg(ctx, 2));
	e->random_len = copy_go_bytes(e->random, sizeof(e->random), go_arg(ctx, 3), (s64)go_arg(ctx, 4));
	e->secret_len = copy_go_bytes(e->secret, sizeof(e->secret), go_arg(ctx, 6), (s64)go_arg(ctx, 7));
	if (e->label_len > KEYLOG_LABEL || e->random_len > KEYLOG_RANDOM || e->secret_len > KEYLOG_SECRET)
		stat_inc(STAT_KEYLOG_LONG);
	submit_event(e);
	return 0;
}

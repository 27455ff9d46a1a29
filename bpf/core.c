//go:build ignore

// core.c holds no programs: it gives user space the Go type of the event
// header that starts every record (bpf2go -type), so the core decodes headers
// from the one C definition.
#include "uranus.h"

EXPORT_TYPE(event_header);
EXPORT_TYPE(span_ctx);

// go_net.h — Go's net types as uprobes read them: where a connection keeps
// its addresses, and a *net.TCPAddr read into an IPv4-mapped IPv6 address
// and a port. Declared once here, for every program that includes it.
#pragma once

#include "uranus.h"

// Where Go keeps a TCP connection's addresses (net.TCPConn → conn.fd →
// netFD.laddr/raddr, each a net.Addr holding a *net.TCPAddr), for the
// uprobes that need a connection's tuple (instrumentors.WireConsts).
volatile const u64 off_tlsconn_conn;  // crypto/tls.Conn.conn: the net.Conn under TLS
volatile const u64 off_tcpconn_conn;  // net.TCPConn.conn
volatile const u64 off_conn_fd;       // net.conn.fd
volatile const u64 off_netfd_laddr;   // net.netFD
volatile const u64 off_netfd_raddr;
volatile const u64 off_tcpaddr_ip;    // net.TCPAddr
volatile const u64 off_tcpaddr_port;

// read_tcp_addr reads the *net.TCPAddr held in a net.Addr interface's data
// word: the address as IPv4-mapped IPv6 (as wire_key holds it) and the port.
static __always_inline int read_tcp_addr(u64 addr, u8 ip[16], u16 *port)
{
	struct {
		u64 ptr;
		s64 len, cap;
	} s;
	if (addr == 0 || bpf_probe_read_user(&s, sizeof(s), (void *)(addr + off_tcpaddr_ip)))
		return -1;
	u64 p = read_u64(addr, off_tcpaddr_port);
	if (p == 0 || p > 0xffff)
		return -1;
	*port = p;
	if (s.len == 16)
		return bpf_probe_read_user(ip, 16, (void *)s.ptr) ? -1 : 0;
	if (s.len != 4)
		return -1;
	__builtin_memset(ip, 0, 10);
	ip[10] = 0xff;
	ip[11] = 0xff;
	return bpf_probe_read_user(ip + 12, 4, (void *)s.ptr) ? -1 : 0;
}

package attach

import (
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseListeners(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 20 4 30 10 -1
   3: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 333 1 0 100 0 0 10 0
`
	got := parseListeners(strings.NewReader(table), map[string]bool{"111": true, "333": true})
	if want := []uint16{0x1f90, 80}; !reflect.DeepEqual(got, want) {
		t.Errorf("parseListeners = %v, want %v (LISTEN rows of our inodes only)", got, want)
	}
	all := parseListeners(strings.NewReader(table), nil)
	if want := []uint16{0x1f90, 0x1f91, 80}; !reflect.DeepEqual(all, want) {
		t.Errorf("parseListeners(nil) = %v, want %v (every LISTEN row)", all, want)
	}
}

// TestListeningPorts reads this test process's own listener from /proc.
func TestListeningPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := uint16(ln.Addr().(*net.TCPAddr).Port)
	ports, err := listeningPorts("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p == want {
			return
		}
	}
	t.Errorf("listeningPorts = %v, want it to hold %d", ports, want)
}

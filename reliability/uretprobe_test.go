package reliability

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/uranus-otel/uranus/internal/e2e"
)

// TestUretprobeContrast shows what TestCrashFreedom guards against: the
// same target, probed with a uretprobe on the same function (a program that
// does nothing at all), dies as soon as a request grows its stack. Opt-in
// (URANUS_URETPROBE_CONTRAST=1): it kills a process on purpose and proves
// nothing about uranus itself.
func TestUretprobeContrast(t *testing.T) {
	if os.Getenv("URANUS_URETPROBE_CONTRAST") != "1" {
		t.Skip("skipping: set URANUS_URETPROBE_CONTRAST=1 to watch a uretprobe crash a Go program")
	}
	e2e.RequireBPF(t)
	for _, v := range []string{"1.16.15", newest()} {
		t.Run("go"+v, func(t *testing.T) {
			a := startApp(t, stackgrow(t, v))
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
				Type:         ebpf.Kprobe,
				License:      "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			ex, err := link.OpenExecutable(fmt.Sprintf("/proc/%d/exe", a.pid()))
			if err != nil {
				t.Fatal(err)
			}
			l, err := ex.Uretprobe("net/http.serverHandler.ServeHTTP", prog, &link.UprobeOptions{PID: a.pid()})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			c := newClient(false, 1)
			sent := 0
			for ; sent < 1000 && a.alive(); sent++ {
				if _, err := fetch(c, fmt.Sprintf("http://%s/work/%d", a.addr, sent)); err != nil {
					break
				}
			}
			select {
			case <-a.exited:
			case <-time.After(5 * time.Second):
				t.Fatalf("the target survived %d requests under a uretprobe", sent)
			}
			// The runtime's own words; the stack dumps around them are long.
			var why []string
			for _, line := range strings.Split(a.errOut(), "\n") {
				if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "runtime: ") && len(why) < 4 {
					why = append(why, line)
				}
			}
			if len(why) == 0 {
				t.Fatalf("the target exited (%v) without a runtime error:\n%s", a.err, a.errOut())
			}
			t.Logf("with a uretprobe, the target died after %d requests (%v):\n%s", sent, a.err, strings.Join(why, "\n"))
		})
	}
}

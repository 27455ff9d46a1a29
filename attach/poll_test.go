package attach

import (
	"testing"
	"time"
)

func TestNextPollInterval(t *testing.T) {
	// From a record, the interval doubles up to maxPollInterval, and
	// further to idlePollInterval only once the ring has been empty for
	// idleAfter.
	interval, idle := minPollInterval, time.Duration(0)
	var seen []time.Duration
	for idle < 3*idleAfter {
		idle += interval
		interval = nextPollInterval(interval, idle)
		if idle < idleAfter && interval > maxPollInterval {
			t.Fatalf("after %v idle: interval %v, want at most %v", idle, interval, maxPollInterval)
		}
		if interval > idlePollInterval {
			t.Fatalf("after %v idle: interval %v, want at most %v", idle, interval, idlePollInterval)
		}
		seen = append(seen, interval)
	}
	if last := seen[len(seen)-1]; last != idlePollInterval {
		t.Errorf("after %v idle: interval %v, want %v", idle, last, idlePollInterval)
	}
	if got := nextPollInterval(minPollInterval, 0); got != 2*minPollInterval {
		t.Errorf("first empty poll: %v, want %v", got, 2*minPollInterval)
	}
}

package main

import (
	"context"
	"time"

	"github.com/uranus-otel/uranus/attach"
	"github.com/uranus-otel/uranus/target"
)

// follower attaches att to the processes a matcher selects as they start,
// detaches them as they exit, and reads records meanwhile: what uranus and
// uranus tls-dump both do, each saying it in its own words through the
// callbacks (any may be nil).
type follower struct {
	att *attach.Attacher
	m   target.Matcher

	attached func(t *attach.Target)                // a process is traced
	exited   func(p target.Process, remaining int) // a traced process exited (its spans flushed)
	vanished func(p target.Process)                // it exited while being attached
	failed   func(p target.Process, err error)     // it cannot be traced (with --pid, follow returns err)
	waiting  func()                                // nothing matched within half a second
	watching func(how string)                      // how processes are found
	every    time.Duration                         // period of tick; 0 for none
	tick     func()
}

// follow runs until ctx is done, the watch ends, the reader fails, or a
// --pid target cannot be traced; then it removes every probe, detaches
// every target (flushing its spans) and stops the reader once it has read
// what was left.
func (f *follower) follow(ctx context.Context) error {
	readCtx, stopReading := context.WithCancel(context.Background())
	readDone := make(chan error, 1)
	go func() { readDone <- f.att.Run(readCtx) }()

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	events, how := target.Watch(watchCtx, f.m, 250*time.Millisecond)
	if f.watching != nil {
		f.watching(how)
	}
	var tick <-chan time.Time
	if f.every > 0 && f.tick != nil {
		t := time.NewTicker(f.every)
		defer t.Stop()
		tick = t.C
	}
	waiting := time.After(500 * time.Millisecond)
	targets := map[int]*attach.Target{}
	var runErr error
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break loop
			}
			if err := f.handle(ctx, ev, targets); err != nil {
				runErr = err
				break loop
			}
		case <-waiting:
			if len(targets) == 0 && f.waiting != nil {
				f.waiting()
			}
		case <-tick:
			f.tick()
		case err := <-readDone:
			runErr, readDone = err, nil
			break loop
		}
	}

	stopWatching()
	f.att.RemoveProbes()
	for _, t := range targets {
		t.Detach(context.Background())
	}
	stopReading()
	if readDone != nil {
		if err := <-readDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// handle attaches to a process that started or detaches one that exited;
// the error is for a --pid target that cannot be traced.
func (f *follower) handle(ctx context.Context, ev target.Event, targets map[int]*attach.Target) error {
	if ev.Exited {
		if t := targets[ev.Process.PID]; t != nil {
			t.Detach(context.Background())
			delete(targets, ev.Process.PID)
			if f.exited != nil {
				f.exited(ev.Process, len(targets))
			}
		}
		return nil
	}
	t, err := f.att.Attach(ctx, ev.Process)
	if !ev.Process.Running() {
		// Whatever failed, or was only half done, the cause is that the
		// process is gone.
		if err == nil {
			t.Detach(context.Background())
		}
		if f.vanished != nil {
			f.vanished(ev.Process)
		}
		return nil
	}
	if err != nil {
		if f.failed != nil {
			f.failed(ev.Process, err)
		}
		if f.m.PID != 0 {
			return err
		}
		return nil
	}
	targets[ev.Process.PID] = t
	if f.attached != nil {
		f.attached(t)
	}
	return nil
}

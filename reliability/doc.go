// Package reliability holds uranus's reliability and security tests, run on
// the real kernel against real target processes: uranus never harms its
// target (crash-freedom under goroutine stack growth), leaves nothing behind
// when it exits or is killed, follows targets through restarts and execs,
// stays bounded when the exporter is down, counts everything it loses,
// survives corrupted binaries, and runs with the capabilities documented in
// the README.
//
// The package has no code of its own: everything is in its tests.
package reliability

// Package testutil holds the helpers the project's tests share: walking
// to, reading and writing files through a styx.File, loopback ports,
// waiting on a condition until the test's own deadline (never on a
// wall-clock budget of its own), and the process's CPU time for
// benchmarks.
package testutil

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// WalkOpen walks from root to path and opens the file with mode; the
// caller clunks it. A walk that stops short is "file not found".
func WalkOpen(ctx context.Context, root styx.File, path string, mode uint8) (styx.File, error) {
	names := styx.SplitPath(path)
	qids, f, err := root.Walk(ctx, names)
	if err != nil {
		return nil, err
	}
	if len(qids) < len(names) {
		return nil, plan9.ErrNotFound
	}
	if _, err := f.Open(ctx, mode); err != nil {
		f.Clunk()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the whole file at path below root (styx.ReadFile).
func ReadFile(ctx context.Context, root styx.File, path string) (string, error) {
	b, err := styx.ReadFile(ctx, root, path, -1)
	return string(b), err
}

// WriteFile writes data to the existing file at path below root in one
// write, opened OWRITE|OTRUNC, as echo does to a ctl file; the error of
// the clunk (a commit at close) is returned too.
func WriteFile(ctx context.Context, root styx.File, path, data string) error {
	f, err := WalkOpen(ctx, root, path, styx.OWRITE|styx.OTRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(ctx, []byte(data), 0); err != nil {
		f.Clunk()
		return err
	}
	return f.Clunk()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort returns a loopback UDP port that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// PortOf is the port of a listener's address, as text.
func PortOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// SelfCPU is the CPU time, user and system, this process has used: for
// benchmarks that report CPU beside time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// poll is how often WaitFor asks again.
const poll = 10 * time.Millisecond

// WaitFor waits until cond holds. It gives up only when the test binary
// is about to reach its -timeout (then it fails naming what), so a slow
// machine waits longer instead of failing.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline, hasDeadline := time.Time{}, false
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		deadline, hasDeadline = d.Deadline()
	}
	for !cond() {
		if hasDeadline && time.Until(deadline) < 5*time.Second {
			t.Fatalf("still waiting for %s when the test run's time ran out", what)
		}
		time.Sleep(poll)
	}
}

package tests

import (
	"strconv"
	"strings"
	"testing"

	"cheshire/internal/testutil"
)

// freePort returns a loopback TCP port that was free a moment ago.

// TestMountByDialString mounts one node's namespace into another's with a
// dial string (the proxy importer) and uses it from the second.
func TestMountByDialString(t *testing.T) {
	port := strconv.Itoa(testutil.FreePort(t))
	a := startNode(t, shortTemp(t), "--listen", "tcp!127.0.0.1!"+port)
	b := startNode(t, shortTemp(t))
	idA, err := a.run("", "9p", "read", "/node/id")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.run("mount tcp!127.0.0.1!"+port+" /n/a\n", "9p", "write", "/ns/ctl"); err != nil {
		t.Fatal(err)
	}
	got, err := b.run("", "9p", "read", "/n/a/node/id")
	if err != nil || got != idA {
		t.Fatalf("remote id %q (%v), want %q", got, err, idA)
	}
	if _, err := b.run("written through b\n", "9p", "write", "/n/a/tmp/x"); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.run("", "9p", "read", "/tmp/x"); got != "written through b\n" {
		t.Errorf("a sees %q", got)
	}
	if ns, _ := b.run("", "9p", "read", "/ns/ns"); !strings.Contains(ns, "mount tcp!127.0.0.1!"+port+" /n/a") {
		t.Errorf("b's namespace:\n%s", ns)
	}
	// A dial string nobody answers is refused with the reason.
	dead := strconv.Itoa(testutil.FreePort(t))
	_, err = b.run("mount tcp!127.0.0.1!"+dead+" /n/dead\n", "9p", "write", "/ns/ctl")
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("mount of a dead address: %v", err)
	}
}

package node_test

import (
	"testing"
	"time"

	"cheshire/providers/node"
	"cheshire/synth"
	"cheshire/synth/synthtest"
)

func TestNodeTree(t *testing.T) {
	id, err := node.LoadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := node.DecodeKey(id.ID())
	if err != nil || !pub.Equal(id.Public) {
		t.Fatalf("id %q does not decode to the key: %v", id.ID(), err)
	}
	n := node.New(node.Config{Identity: id, Version: "test", Start: time.Now(), Owner: "glenda",
		Log: synth.NewLog(0), Addrs: func() []string { return []string{"unix!/x"} }})
	synthtest.TestServer(t, n, "glenda")
}

func TestIdentityKeptAndPrivate(t *testing.T) {
	dir := t.TempDir()
	a, err := node.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.LoadIdentity(dir)
	if err != nil || a.ID() != b.ID() {
		t.Fatalf("second load: %v %v", b, err)
	}
	if _, err := node.DecodeKey("not-a-key"); err == nil {
		t.Error("bad key decoded")
	}
}

package node_test

import (
	"testing"
	"time"

	"cheshire/nodekey"
	"cheshire/providers/node"
	"cheshire/synth"
	"cheshire/synth/synthtest"
)

func TestNodeTree(t *testing.T) {
	id, err := nodekey.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := nodekey.Decode(id.ID())
	if err != nil || !pub.Equal(id.Public) {
		t.Fatalf("id %q does not decode to the key: %v", id.ID(), err)
	}
	n := node.New(node.Config{ID: id.ID(), Version: "test", Start: time.Now(), Owner: "glenda",
		Log: synth.NewLog(0), Addrs: func() []string { return []string{"unix!/x"} }})
	synthtest.TestServer(t, n, "glenda")
}

func TestIdentityKeptAndPrivate(t *testing.T) {
	dir := t.TempDir()
	a, err := nodekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := nodekey.Load(dir)
	if err != nil || a.ID() != b.ID() {
		t.Fatalf("second load: %v %v", b, err)
	}
	if _, err := nodekey.Decode("not-a-key"); err == nil {
		t.Error("bad key decoded")
	}
}

package modules_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/module"
	"cheshire/modules"
	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// committer is a test module with one file, "setting", that commits
// what is written to it when the fid is clunked (synth.ReadWrite), as a
// config file does.
type committer struct {
	mu      sync.Mutex
	setting string // guarded by mu: the last committed value
}

func (c *committer) Manifest() module.Manifest { return module.Manifest{Name: "cfg", Version: "1"} }

func (c *committer) CheckConfig(cfg module.Config) error { return nil }

func (c *committer) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	root := synth.NewDir("/", 0777)
	root.Add(synth.ReadWrite("setting", 0666, func(ctx context.Context) ([]byte, error) {
		return []byte(c.get()), nil
	}, func(ctx context.Context, data []byte) error {
		c.mu.Lock()
		c.setting = string(data)
		c.mu.Unlock()
		return nil
	}))
	return committerInst{synth.NewServer(root, synth.WithOwner("glenda"))}, nil
}

func (c *committer) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.setting
}

type committerInst struct{ *synth.Server }

func (committerInst) Stop(ctx context.Context) error { return nil }

// TestClunkWhileStopped: a fid written to and clunked while its module
// is stopped fails the clunk with "module stopped", since the commit it
// would have made is skipped; a fid only read is clunked quietly.
func TestClunkWhileStopped(t *testing.T) {
	t.Parallel()
	c := &committer{}
	e := newManager(t, modules.Options{}, c)
	e.wait(e.mgr.Booted(), "the boot")
	root := e.root("cfg")
	defer root.Clunk()

	if err := testutil.WriteFile(e.ctx, root, "setting", "one"); err != nil {
		t.Fatalf("write while running: %v", err)
	}
	if got := c.get(); got != "one" {
		t.Fatalf("committed %q, want one", got)
	}

	written, err := testutil.WalkOpen(e.ctx, root, "setting", styx.OWRITE|styx.OTRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := written.Write(e.ctx, []byte("two"), 0); err != nil {
		t.Fatal(err)
	}
	read, err := testutil.WalkOpen(e.ctx, root, "setting", styx.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mgr.Stop(e.ctx, "cfg"); err != nil {
		t.Fatal(err)
	}
	if err := written.Clunk(); !errors.Is(err, plan9.ErrModuleStopped) {
		t.Errorf("clunk of a written fid while stopped: %v, want %q", err, plan9.ErrModuleStopped)
	}
	if err := read.Clunk(); err != nil {
		t.Errorf("clunk of a read fid while stopped: %v", err)
	}
	if got := c.get(); got != "one" {
		t.Errorf("committed %q after the skipped clunk, want one", got)
	}
}

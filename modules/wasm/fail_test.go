package wasm

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cheshire/internal/testutil"
)

// A module in an endless loop is interrupted within its budget and
// fails, while another module keeps serving.
func TestLoopInterrupted(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	s := start(t, "loop", "cpu 300ms")
	other := start(t, "trap", "")
	t.Logf("started two in %v", time.Since(t0))
	root, oroot := attach(t, s, "glenda"), attach(t, other, "glenda")
	if got, err := testutil.ReadFile(ctx, root, "/ok"); err != nil || got != "ok\n" {
		t.Fatalf("read /ok: %q, %v", got, err)
	}

	// The other module answers all along.
	var stop atomic.Bool
	var served atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if got, err := testutil.ReadFile(ctx, oroot, "/ok"); err != nil || got != "ok\n" {
				t.Errorf("other module: %q, %v", got, err)
				return
			}
			served.Add(1)
		}
	})

	t0 = time.Now()
	_, err := testutil.ReadFile(ctx, root, "/spin")
	took := time.Since(t0)
	wantErr(t, "read /spin", err, "module loop: call interrupted: cpu budget 300ms exceeded")
	t.Logf("interrupted after %v", took)
	if took > 3*time.Second {
		t.Errorf("interrupting took %v", took)
	}
	ferr := s.failed(t)
	wantErr(t, "env.Fail", ferr, "cpu budget 300ms exceeded")
	stop.Store(true)
	wg.Wait()
	if served.Load() == 0 {
		t.Error("the other module served nothing while the loop ran")
	}

	// Afterwards everything fails fast.
	t0 = time.Now()
	_, err = testutil.ReadFile(ctx, root, "/ok")
	wantErr(t, "read after failure", err, "module loop: module stopped")
	if d := time.Since(t0); d > time.Second {
		t.Errorf("failing fast took %v", d)
	}
	if !s.log.has("instance failed") {
		t.Errorf("failure not logged:\n%s", s.log)
	}
}

// A panic in the guest fails the call and the instance.
func TestTrap(t *testing.T) {
	ctx := context.Background()
	for _, file := range []string{"/panic", "/nil"} {
		t.Run(strings.TrimPrefix(file, "/"), func(t *testing.T) {
			s := start(t, "trap", "")
			root := attach(t, s, "glenda")
			if got, err := testutil.ReadFile(ctx, root, "/ok"); err != nil || got != "ok\n" {
				t.Fatalf("read /ok: %q, %v", got, err)
			}
			_, err := testutil.ReadFile(ctx, root, file)
			wantErr(t, "read "+file, err, "module trap trapped")
			wantErr(t, "env.Fail", s.failed(t), "module trap trapped")
			_, err = testutil.ReadFile(ctx, root, "/ok")
			wantErr(t, "read after trap", err, "module stopped")
			if file == "/panic" && !s.log.has("trap: read of /panic") {
				t.Errorf("the guest's panic message is not in its log:\n%s", s.log)
			}
		})
	}
}

// The memory limit bounds the guest: a limit below what the Go runtime
// needs to start makes the start fail, with the module's name.
func TestMemoryLimit(t *testing.T) {
	cfg, _ := parseConfigText("memory 1M")
	m := load(t, "loop")
	_, err := m.Start(context.Background(), envFor("loop", cfg, t.TempDir()))
	wantErr(t, "start with 1M", err, "start loop")
	t.Log(err)
}

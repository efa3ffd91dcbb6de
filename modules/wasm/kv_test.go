package wasm

import (
	"context"
	"slices"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/plan9"
)

func TestKV(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := startEnv(t, "kv", "", dir, nil)
	root := attach(t, s, "glenda")

	ok(t, "ctl set", writeFile(ctx, root, "/ctl", plan9.OWRITE, "set a hello world\nset b two"))
	got, err := testutil.ReadFile(ctx, root, "/keys/a")
	if err != nil || got != "hello world" {
		t.Fatalf("read /keys/a: %q, %v", got, err)
	}
	ok(t, "create c", create(ctx, root, "/keys", "c", 0o666, "see"))
	if got, err := testutil.ReadFile(ctx, root, "/keys/c"); err != nil || got != "see" {
		t.Fatalf("read /keys/c: %q, %v", got, err)
	}
	ok(t, "rewrite a", writeFile(ctx, root, "/keys/a", plan9.OWRITE|plan9.OTRUNC, "bye"))
	if got, err := testutil.ReadFile(ctx, root, "/keys/a"); err != nil || got != "bye" {
		t.Fatalf("read /keys/a after rewrite: %q, %v", got, err)
	}
	names, err := readDirNames(ctx, root, "/keys")
	if err != nil || !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("ls /keys: %q, %v", names, err)
	}
	ok(t, "remove b", remove(ctx, root, "/keys/b"))
	_, err = testutil.ReadFile(ctx, root, "/keys/b")
	wantErr(t, "read removed key", err, "file not found")
	ok(t, "ctl del", writeFile(ctx, root, "/ctl", plan9.OWRITE, "del c"))
	wantErr(t, "bad ctl", writeFile(ctx, root, "/ctl", plan9.OWRITE, "frob x"), "unknown control message")
	if got, err := testutil.ReadFile(ctx, root, "/ctl"); err != nil || got != "keys 1\n" {
		t.Fatalf("read /ctl: %q, %v", got, err)
	}

	// What was acknowledged survives a restart.
	ok(t, "stop", s.Stop(ctx))
	_, err = testutil.ReadFile(ctx, root, "/keys/a")
	wantErr(t, "read after stop", err, "module stopped")
	s2 := startEnv(t, "kv", "", dir, nil)
	root2 := attach(t, s2, "glenda")
	if got, err := testutil.ReadFile(ctx, root2, "/keys/a"); err != nil || got != "bye" {
		t.Fatalf("read /keys/a after restart: %q, %v", got, err)
	}
	names, err = readDirNames(ctx, root2, "/keys")
	if err != nil || !slices.Equal(names, []string{"a"}) {
		t.Fatalf("ls /keys after restart: %q, %v", names, err)
	}
}

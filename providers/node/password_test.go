package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/styx"
)

// TestPasswords: a user sets their own password by writing
// /node/password; it checks, survives a new Passwords on the same file,
// and the file (mode 0600) holds no password in clear. Bad passwords
// are refused at the write, with nothing changed.
func TestPasswords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "passwords")
	pws := NewPasswords(file)
	n := New(Config{ID: "id", Owner: "glenda", Log: nil, Addrs: func() []string { return nil }, Passwords: pws})
	ctx := context.Background()
	write := func(user, data string) error {
		root, err := n.Attach(ctx, user, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Clunk()
		return styx.WriteFile(ctx, root, "password", []byte(data), 0)
	}
	if err := write("alice", "correct horse\n"); err != nil {
		t.Fatal(err)
	}
	if !pws.Check("alice", "correct horse") || pws.Check("alice", "wrong horse") || pws.Check("bob", "correct horse") {
		t.Error("Check wrong")
	}
	if !NewPasswords(file).Check("alice", "correct horse") {
		t.Error("password lost with a new Passwords")
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "correct horse") {
		t.Error("password kept in clear")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	for _, bad := range []string{"short\n", "two\nlines here\n", strings.Repeat("x", 80) + "\n"} {
		if err := write("alice", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := write("key:abc", "a long enough one\n"); err == nil {
		t.Error("a remote key's view set a password")
	}
	if !pws.Check("alice", "correct horse") {
		t.Error("a refused write changed the password")
	}
}

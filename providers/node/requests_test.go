package node_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/plan9"
	"cheshire/providers/node"
	"cheshire/synth"
	"cheshire/synth/synthtest"
)

const testKey = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u" // 52 z-base-32 letters

func requestsNode(t *testing.T, path string) (*node.Node, *node.Requests) {
	t.Helper()
	q, err := node.OpenRequests(path, "glenda")
	if err != nil {
		t.Fatal(err)
	}
	n := node.New(node.Config{ID: "id", Version: "test", Start: time.Now(), Owner: "glenda",
		Log: synth.NewLog(0), Addrs: func() []string { return nil }, Requests: q})
	return n, q
}

// TestRequests files requests through the Go API (as the node does for
// a refused remote key) and through the ctl (as the key's own view
// would), decides them, and reopens the queue from its file.
func TestRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "requests")
	n, q := requestsNode(t, path)

	r, err := q.File("key:"+testKey, "access", []string{"/tmp/shared dir"})
	if err != nil {
		t.Fatal(err)
	}
	if r.File != "/ns/ctl" || r.Line != "export '/tmp/shared dir' ro to "+testKey || r.State != node.Pending {
		t.Fatalf("access request: %+v", r)
	}
	if again, err := q.File("key:"+testKey, "access", []string{"/tmp/shared dir"}); err != nil || again.ID != r.ID {
		t.Fatalf("the same request again: %+v %v, want id %d", again, err, r.ID)
	}
	if other, err := q.File("key:"+testKey, "access", []string{"/", "rw"}); err != nil || other.ID != r.ID || other.Line != r.Line {
		t.Fatalf("another access request while one waits: %+v %v, want request %d unchanged", other, err, r.ID)
	}
	if _, err := q.File("alice", "join", nil); err == nil || !strings.Contains(err.Error(), "cannot be") {
		t.Fatalf("a join asked by a user, not a key: %v", err)
	}
	for _, bad := range [][]string{{"tmp"}, {"/tmp", "rwx"}, {"/tmp\nbind / /x"}, {}} {
		if _, err := q.File("key:"+testKey, "access", bad); err == nil {
			t.Errorf("access %q filed", bad)
		}
	}
	if _, err := q.File("key:"+testKey+"\n", "join", nil); err == nil {
		t.Error("a bad key filed a request")
	}

	// Through 9P: the asker is the attaching user, never the text.
	view, err := n.Attach(ctx, "key:"+testKey, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Clunk()
	if err := testutil.WriteFile(ctx, view, "/requests/ctl", "request join\n"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, view, "/requests/ctl", "approve 1\n"); !errors.Is(err, plan9.ErrBadCtl) {
		t.Fatalf("approving through the ctl: %v", err)
	}
	if err := testutil.WriteFile(ctx, view, "/requests/decide", "approve 1\n"); !errors.Is(err, plan9.ErrPerm) {
		t.Fatalf("a key approving its own request: %v", err)
	}
	text, err := testutil.ReadFile(ctx, view, "/requests/2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"from key:" + testKey + "\n", "kind join\n", "file /ledger/ctl\n", "line join " + testKey + "\n", "state pending\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("/requests/2 lacks %q:\n%s", want, text)
		}
	}

	// Through Ask, as a remote key attached to #requests is served.
	asker, err := q.Ask().Attach(ctx, "key:"+testKey, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer asker.Clunk()
	if err := testutil.WriteFile(ctx, asker, "/ctl", "request holder\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := testutil.ReadFile(ctx, asker, "/ctl"); !errors.Is(err, plan9.ErrPerm) {
		t.Fatalf("reading the asker's ctl: %v", err)
	}
	if r, ok := q.Get(3); !ok || r.Kind != "holder" || r.From != "key:"+testKey {
		t.Fatalf("request 3: %+v", r)
	}
	synthtest.TestServer(t, q.Ask(), "key:"+testKey)

	owner, err := n.Attach(ctx, "glenda", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Clunk()
	if err := testutil.WriteFile(ctx, owner, "/requests/decide", "approve 1\n"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, owner, "/requests/decide", "refuse 2\n"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, owner, "/requests/decide", "refuse 1\n"); !errors.Is(err, node.ErrNotPending) {
		t.Fatalf("deciding twice: %v", err)
	}
	if err := testutil.WriteFile(ctx, owner, "/requests/decide", "approve 99\n"); !errors.Is(err, node.ErrNoRequest) {
		t.Fatalf("approving no request: %v", err)
	}
	st, err := testutil.ReadFile(ctx, owner, "/requests/ctl")
	if err != nil || !strings.Contains(st, "pending 1\napproved 1\nrefused 1\n") {
		t.Fatalf("/requests/ctl: %q %v", st, err)
	}
	synthtest.TestServer(t, n, "glenda")

	_, q2 := requestsNode(t, path)
	got := q2.List()
	if len(got) != 3 || got[0].State != node.Approved || got[0].By != "glenda" || got[1].State != node.Refused || got[2].State != node.Pending {
		t.Fatalf("reopened: %+v", got)
	}
	if r, err := q2.File("key:"+testKey, "join", nil); err != nil || r.ID != 4 || r.Line != "join "+testKey {
		t.Fatalf("after reopening: %+v %v", r, err)
	}
}

// TestRequestsBounded fills the queue: decided requests make room,
// pending ones do not.
func TestRequestsBounded(t *testing.T) {
	t.Parallel()
	q, err := node.OpenRequests(filepath.Join(t.TempDir(), "requests"), "glenda")
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) string { return "key:" + fmt.Sprintf("%052d", i) }
	for i := range node.MaxRequests {
		if _, err := q.File(key(i), "access", []string{"/p"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.File("key:"+testKey, "join", nil); !errors.Is(err, node.ErrQueueFull) {
		t.Fatalf("past the bound: %v", err)
	}
	if err := q.Decide(5, "glenda", node.Refused); err != nil {
		t.Fatal(err)
	}
	if r, err := q.File("key:"+testKey, "join", nil); err != nil || r.ID != node.MaxRequests+1 {
		t.Fatalf("after one was decided: %+v %v", r, err)
	}
	if _, ok := q.Get(5); ok {
		t.Error("the decided request was kept past the bound")
	}
}

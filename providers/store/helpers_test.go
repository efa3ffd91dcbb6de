package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

const owner = "glenda"

// cluster is n Stores in one process, each holder reaching the others
// through their real /store/fragments trees (attached as the user the
// other node's DIR/users names it), as cmd/cheshire wires them over TLS.
type cluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*tnode
	down  map[string]bool          // keys whose node is "killed"
	stall map[string]chan struct{} // keys whose node's reads block until closed
	full  map[string]bool          // keys whose node's disk is full
	reads atomic.Int64             // Reads of other nodes' fragments (and lists)
}

type tnode struct {
	key string
	dir string
	s   *Store
}

func newCluster(t testing.TB, n int, shard int) *cluster {
	c := &cluster{t: t, down: make(map[string]bool), stall: make(map[string]chan struct{}), full: make(map[string]bool)}
	for range n {
		c.add(shard)
	}
	return c
}

// add starts one more node, known to (a user of) every other.
func (c *cluster) add(shard int) *tnode {
	t := c.t
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nd := &tnode{key: nodekey.Encode(pub), dir: t.TempDir()}
	c.mu.Lock()
	c.nodes = append(c.nodes, nd)
	nodes := append([]*tnode(nil), c.nodes...)
	c.mu.Unlock()
	for _, o := range nodes {
		c.writeUsers(o, nodes)
	}
	s, err := New(Options{Dir: nd.dir, Owner: owner, Self: nd.key, Shard: shard, RepairEvery: -1,
		Dial: func(ctx context.Context, key, addr string) (styx.File, error) { return c.dial(ctx, nd, key) }})
	if err != nil {
		t.Fatal(err)
	}
	nd.s = s
	t.Cleanup(s.Close)
	return nd
}

func userName(key string) string { return "n" + key[:8] }

func (c *cluster) writeUsers(o *tnode, nodes []*tnode) {
	var b strings.Builder
	for _, x := range nodes {
		if x != o {
			fmt.Fprintf(&b, "%s %s\n", userName(x.key), x.key)
		}
	}
	if err := os.WriteFile(filepath.Join(o.dir, "users"), []byte(b.String()), 0600); err != nil {
		c.t.Fatal(err)
	}
}

// dial attaches to key's fragments as from's key, as a connection over
// TLS does (HolderAttach).
func (c *cluster) dial(ctx context.Context, from *tnode, key string) (styx.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down[key] {
		return nil, fmt.Errorf("remote node unreachable")
	}
	for _, n := range c.nodes {
		if n.key == key && n.s != nil {
			f, err := n.s.HolderAttach(ctx, from.key)
			if err != nil {
				return nil, err
			}
			return &reachable{File: f, c: c, key: key}, nil
		}
	}
	return nil, fmt.Errorf("remote node unreachable")
}

// reachable is a file of a node that fails every call once the node is
// killed, as files over a lost connection do.
type reachable struct {
	styx.File
	c   *cluster
	key string
}

var errUnreachable = errors.New("remote node unreachable")

func (r *reachable) up() bool {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return !r.c.down[r.key]
}

func (r *reachable) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if !r.up() {
		return nil, nil, errUnreachable
	}
	qs, f, err := r.File.Walk(ctx, names)
	if f != nil {
		f = &reachable{File: f, c: r.c, key: r.key}
	}
	return qs, f, err
}

func (r *reachable) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if !r.up() {
		return nil, 0, errUnreachable
	}
	f, n, err := r.File.Create(ctx, name, perm, mode)
	if f != nil {
		f = &reachable{File: f, c: r.c, key: r.key}
	}
	return f, n, err
}

func (r *reachable) Open(ctx context.Context, mode uint8) (uint32, error) {
	if !r.up() {
		return 0, errUnreachable
	}
	return r.File.Open(ctx, mode)
}

func (r *reachable) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if !r.up() {
		return 0, errUnreachable
	}
	r.c.reads.Add(1)
	r.c.mu.Lock()
	stalled := r.c.stall[r.key]
	r.c.mu.Unlock()
	if stalled != nil {
		select {
		case <-stalled:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return r.File.Read(ctx, p, off)
}

func (r *reachable) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if !r.up() {
		return 0, errUnreachable
	}
	r.c.mu.Lock()
	full := r.c.full[r.key]
	r.c.mu.Unlock()
	if full && len(p) > 0 {
		return 0, syscall.ENOSPC
	}
	return r.File.Write(ctx, p, off)
}

func (r *reachable) Stat(ctx context.Context) (styx.Dir, error) {
	if !r.up() {
		return styx.Dir{}, errUnreachable
	}
	return r.File.Stat(ctx)
}

func (r *reachable) Remove(ctx context.Context) error {
	if !r.up() {
		return errUnreachable
	}
	return r.File.Remove(ctx)
}

func (c *cluster) kill(key string) {
	c.mu.Lock()
	c.down[key] = true
	c.mu.Unlock()
}

func (c *cluster) node(key string) *tnode {
	for _, n := range c.nodes {
		if n.key == key {
			return n
		}
	}
	return nil
}

func rootOf(t *testing.T, s *Store) styx.File {
	t.Helper()
	r, err := s.Attach(t.Context(), owner, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Clunk() })
	return r
}

func ctl(t *testing.T, s *Store, file, line string) error {
	t.Helper()
	return styx.WriteFile(t.Context(), rootOf(t, s), file, []byte(line+"\n"), 0600)
}

func read(t *testing.T, s *Store, p string) ([]byte, error) {
	t.Helper()
	return styx.ReadFile(t.Context(), rootOf(t, s), p, -1)
}

func mustRead(t *testing.T, s *Store, p string) string {
	t.Helper()
	b, err := read(t, s, p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func randomData(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func capLine(t *testing.T, s *Store, p, kind string) string {
	t.Helper()
	for _, l := range strings.Split(mustRead(t, s, p+".caps"), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == kind {
			return v
		}
	}
	t.Fatalf("no %s cap in %s.caps", kind, p)
	return ""
}

func healthOf(t *testing.T, s *Store, p string) string {
	t.Helper()
	for _, l := range strings.Split(mustRead(t, s, "health"), "\n") {
		if strings.HasPrefix(l, p+" ") {
			return l
		}
	}
	t.Fatalf("no %s in health:\n%s", p, mustRead(t, s, "health"))
	return ""
}

var _ = bytes.Equal
var _ = plan9.ErrPerm

package tests

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/styx"
)

// msgCluster starts n nodes that are each other's msg peers, each
// record published in the DHT so that they reach each other by key.
func msgCluster(t *testing.T, n int) *cluster {
	t.Helper()
	cl := startCluster(t, n)
	for _, m := range cl.nodes {
		m.published(1)
	}
	for _, m := range cl.nodes {
		for _, o := range cl.nodes {
			if o != m {
				if err := m.ctl("/msg/ctl", "peer add "+o.key); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return cl
}

// peerStat is a count of /msg/stats for peer key.
func (m *member) peerStat(key, field string) int {
	m.t.Helper()
	for _, l := range strings.Split(m.read("/msg/stats"), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != key {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == field {
				n, _ := strconv.Atoi(f[i+1])
				return n
			}
		}
	}
	return 0
}

// waitSubscribers waits until each node's TOPIC/peers lists every other.
func waitSubscribers(t *testing.T, cl *cluster, topic string) {
	t.Helper()
	for _, m := range cl.nodes {
		testutil.WaitFor(t, m.key[:8]+" to hear every subscription to "+topic, func() bool {
			out, err := m.run("", "9p", "read", "/msg/"+topic+"/peers")
			return err == nil && strings.Count(out, "\n") == len(cl.nodes)-1
		})
	}
}

// writeLine opens path of root for writing, writes line and clunks it.
func writeLine(ctx context.Context, root *styx.Fid, path, line string) error {
	f, err := root.WalkPath(ctx, path)
	if err != nil {
		return err
	}
	defer f.Clunk(context.Background())
	if err := f.Open(ctx, styx.OWRITE); err != nil {
		return err
	}
	_, err = f.WriteAt(ctx, []byte(line), 0)
	return err
}

// TestMsgNodes: three nodes; a message to * reaches both subscribers'
// inboxes with the sender's proven key; a flood from one peer is capped
// and the drops counted, the sender told; a message too long is refused.
func TestMsgNodes(t *testing.T) {
	t.Parallel()
	cl := msgCluster(t, 3)
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	for _, m := range cl.nodes {
		if err := m.ctl("/msg/ctl", "subscribe chat"); err != nil {
			t.Fatal(err)
		}
	}
	waitSubscribers(t, cl, "chat")
	if err := a.ctl("/msg/chat/send", "* hello from a"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, m := range []*member{b, c} {
		root := m.client(userName(t))
		testutil.WaitFor(t, "the message in "+m.key[:8]+"'s inbox", func() bool {
			f, err := root.WalkPath(ctx, "/msg/chat/inbox")
			if err != nil {
				return false
			}
			defer f.Clunk(context.Background())
			if f.Open(ctx, styx.OREAD) != nil {
				return false
			}
			buf := make([]byte, 4096)
			n, _ := f.ReadOnce(ctx, buf, 0) // the history there is; a read at the end would wait
			return string(buf[:n]) == "from "+a.key+" hello from a\n"
		})
	}
	if err := a.ctl("/msg/chat/send", "* "+strings.Repeat("x", 5000)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("a message of 5000 bytes: %v", err)
	}

	// A floods b: 8 writers, 1000 messages.
	const flood = 1000
	before := b.peerStat(a.key, "received")
	root := a.client(userName(t))
	var mu sync.Mutex
	refused := 0
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += 8 {
				if err := writeLine(ctx, root, "/msg/chat/send", fmt.Sprintf("%s flood %d", b.key, i)); err != nil {
					if !strings.Contains(err.Error(), "too many messages") {
						t.Errorf("message %d: %v", i, err)
					}
					mu.Lock()
					refused++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	got, dropped := b.peerStat(a.key, "received")-before, b.peerStat(a.key, "dropped-rate")
	t.Logf("flood of %d: %d taken in, %d dropped", flood, got, dropped)
	if dropped == 0 || got+dropped != flood || dropped != refused {
		t.Errorf("flood of %d: %d taken in, %d dropped, sender told of %d", flood, got, dropped, refused)
	}
	// c was not flooded and still hears a.
	if err := a.ctl("/msg/chat/send", c.key+" still here"); err != nil {
		t.Errorf("to c after the flood: %v", err)
	}

	// A node that a does not name a peer is refused at attach: its key is
	// the connection's, whatever it writes.
	d := cl.add()
	for _, line := range []string{"peer add " + a.key, "subscribe chat"} {
		if err := d.ctl("/msg/ctl", line); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.ctl("/msg/chat/send", a.key+" let me in"); err == nil || !strings.Contains(err.Error(), "not a peer") {
		t.Errorf("a stranger's message: %v", err)
	}
	if !strings.Contains(a.read("/msg/stats"), "stranger dropped ") || strings.Contains(a.read("/msg/stats"), "stranger dropped 0") {
		t.Errorf("a's stats after a stranger:\n%s", a.read("/msg/stats"))
	}
}

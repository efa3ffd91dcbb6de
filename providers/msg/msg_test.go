package msg

import (
	"context"
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/styx"
	"cheshire/synth/synthtest"
)

func newKey(t testing.TB) string {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return nodekey.Encode(pub)
}

// net is a set of Msgs that reach each other in process, as the #msg
// service over an import would.
type net struct {
	mu   sync.Mutex
	byID map[string]*Msg
}

func (n *net) dialFrom(self string) func(ctx context.Context, key string) (styx.File, error) {
	return func(ctx context.Context, key string) (styx.File, error) {
		n.mu.Lock()
		m := n.byID[key]
		n.mu.Unlock()
		if m == nil {
			return nil, ErrNoSuchKey
		}
		return m.PeerAttach(ctx, self)
	}
}

func (n *net) add(t *testing.T, o Options) *Msg {
	t.Helper()
	if o.Self == "" {
		o.Self = newKey(t)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Owner = "glenda"
	o.Dial = n.dialFrom(o.Self)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	n.mu.Lock()
	if n.byID == nil {
		n.byID = map[string]*Msg{}
	}
	n.byID[o.Self] = m
	n.mu.Unlock()
	return m
}

type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *inbox) add(from, text string) {
	in.mu.Lock()
	in.msgs = append(in.msgs, from+" "+text)
	in.mu.Unlock()
}
func (in *inbox) n() int { in.mu.Lock(); defer in.mu.Unlock(); return len(in.msgs) }

func TestMsgSendAndInbox(t *testing.T) {
	t.Parallel()
	var n net
	a, b := n.add(t, Options{}), n.add(t, Options{})
	for _, p := range [][2]*Msg{{a, b}, {b, a}} {
		if err := p[0].AddPeer(p[1].o.Self); err != nil {
			t.Fatal(err)
		}
	}
	var got inbox
	if err := b.Listen("chat", got.add); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a to hear of b's subscription", func() bool { return len(a.Subscribers("chat")) == 1 })
	ctx := t.Context()
	root, _ := a.Attach(ctx, "glenda", "", nil)
	defer root.Clunk()
	if err := a.Subscribe("chat"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, root, "/chat/send", "* hello there\n"+b.o.Self+" direct\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "two messages", func() bool { return got.n() == 2 })
	if got.msgs[0] != a.o.Self+" hello there" || got.msgs[1] != a.o.Self+" direct" {
		t.Errorf("messages %q", got.msgs)
	}
	broot, _ := b.Attach(ctx, "glenda", "", nil)
	defer broot.Clunk()
	in, err := styx.ReadFile(ctx, broot, "/chat/inbox", int64(len("from  hello there\n")+len(a.o.Self)))
	if err != nil || string(in) != "from "+a.o.Self+" hello there\n" {
		t.Errorf("inbox %q, %v", in, err)
	}
	// Bad input: too long, a newline, an unknown key, a bad topic.
	if err := a.Send(ctx, "chat", "*", strings.Repeat("x", DefaultMaxSize+1)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long message: %v", err)
	}
	if err := a.Send(ctx, "chat", b.o.Self, "a\nfrom forged"); err == nil {
		t.Error("a message with a newline was sent")
	}
	if err := a.Send(ctx, "chat", newKey(t), "hi"); err == nil || !strings.Contains(err.Error(), "no such peer") {
		t.Errorf("to a stranger: %v", err)
	}
	if err := a.Send(ctx, "no/such", "*", "hi"); err == nil {
		t.Error("bad topic accepted")
	}
	// b does not listen on "other": the message is refused and counted.
	if err := a.Send(ctx, "other", b.o.Self, "hi"); err == nil || !strings.Contains(err.Error(), "no such topic") {
		t.Errorf("to an unsubscribed topic: %v", err)
	}
	if st, _ := b.StatsOf(a.o.Self); st.DropTopic != 1 || st.Received != 2 {
		t.Errorf("b's counts of a: %+v", st)
	}
	if err := testutil.WriteFile(ctx, broot, "/chat/ctl", "unsubscribe"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a to hear b left chat", func() bool { return len(a.Subscribers("chat")) == 0 })
	synthtest.TestServer(t, a, "glenda")
	synthtest.TestServer(t, b.peerSrv, a.o.Self)
}

// TestMsgFlood: a peer sending 500 messages at once gets the burst
// through and the rest dropped, counted; a stranger is refused.
func TestMsgFlood(t *testing.T) {
	t.Parallel()
	var n net
	clock := time.Unix(1e9, 0)
	var cmu sync.Mutex
	now := func() time.Time { cmu.Lock(); defer cmu.Unlock(); return clock }
	a := n.add(t, Options{})
	b := n.add(t, Options{Now: now})
	a.AddPeer(b.o.Self)
	b.AddPeer(a.o.Self)
	var got inbox
	b.Listen("flood", got.add)
	ctx := t.Context()
	dropped := 0
	for i := range 500 {
		if err := a.Send(ctx, "flood", b.o.Self, "m"); err != nil {
			if !strings.Contains(err.Error(), "too many messages") {
				t.Fatalf("message %d: %v", i, err)
			}
			dropped++
		}
	}
	st, _ := b.StatsOf(a.o.Self)
	if st.Received != DefaultBurst || got.n() != DefaultBurst || st.DropRate != 400 || dropped != 400 {
		t.Errorf("received %d (handler %d), dropped %d (sender saw %d), want %d and 400", st.Received, got.n(), st.DropRate, dropped, DefaultBurst)
	}
	cmu.Lock()
	clock = clock.Add(time.Second)
	cmu.Unlock()
	for range 60 {
		a.Send(ctx, "flood", b.o.Self, "m")
	}
	if st, _ := b.StatsOf(a.o.Self); st.Received != DefaultBurst+DefaultRate {
		t.Errorf("a second later: received %d, want %d", st.Received, DefaultBurst+DefaultRate)
	}
	// A stranger cannot attach.
	if _, err := b.PeerAttach(ctx, newKey(t)); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("stranger: %v", err)
	}
}

// TestMsgState: peers, topics and peers' subscriptions survive a restart.
func TestMsgState(t *testing.T) {
	t.Parallel()
	var n net
	dir := t.TempDir()
	a := n.add(t, Options{Dir: dir})
	k := newKey(t)
	a.AddPeer(k)
	a.Subscribe("t1")
	a.remoteSub(k, []string{"t2"}, true)
	a.Close()
	a2, err := New(Options{Dir: dir, Self: a.o.Self})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if !a2.IsPeer(k) || len(a2.Subscribers("t2")) != 1 {
		t.Errorf("state after restart:\n%s", a2.ctlStatus(t.Context()))
	}
}

func FuzzPeerDeliver(f *testing.F) {
	f.Add("chat hello")
	f.Add("chat \x00")
	f.Add("")
	f.Add("../x y")
	a, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer a.Close()
	k := newKey(f)
	a.AddPeer(k)
	a.Subscribe("chat")
	f.Fuzz(func(t *testing.T, data string) {
		name, text, _ := strings.Cut(data, " ")
		if err := a.take(k, name, text); err == nil {
			if name != "chat" || a.checkText(text) != nil {
				t.Errorf("took %q", data)
			}
		}
		a.remoteSub(k, strings.Fields(data), true)
	})
}

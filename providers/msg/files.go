package msg

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

func (m *Msg) cmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "subscribe", Min: 1, Max: 1, Usage: "subscribe TOPIC",
			Run: func(ctx context.Context, a []string) error { return m.Subscribe(a[0]) }},
		{Name: "unsubscribe", Min: 1, Max: 1, Usage: "unsubscribe TOPIC",
			Run: func(ctx context.Context, a []string) error { return m.Unsubscribe(a[0]) }},
		{Name: "peer add", Min: 1, Max: 1, Usage: "peer add KEY",
			Run: func(ctx context.Context, a []string) error { return m.AddPeer(a[0]) }},
		{Name: "peer remove", Min: 1, Max: 1, Usage: "peer remove KEY",
			Run: func(ctx context.Context, a []string) error { return m.RemovePeer(a[0]) }},
	}
}

// ctlStatus is /msg/ctl's text: a "peer KEY TOPIC..." line a peer (the
// topics it subscribed to here) and a "topic NAME" line a topic of this
// node.
func (m *Msg) ctlStatus(ctx context.Context) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m.peers)) {
		b.WriteString("peer " + k)
		for _, t := range slices.Sorted(maps.Keys(m.peers[k].subs)) {
			b.WriteString(" " + t)
		}
		b.WriteString("\n")
	}
	for _, n := range slices.Sorted(maps.Keys(m.topics)) {
		b.WriteString("topic " + n + "\n")
	}
	return b.String()
}

// statsText is /msg/stats: a line a peer.
func (m *Msg) statsText(ctx context.Context) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m.peers)) {
		s := m.peers[k].st
		fmt.Fprintf(&b, "%s received %d sent %d failed %d dropped-rate %d dropped-size %d dropped-topic %d dropped-bad %d\n",
			k, s.Received, s.Sent, s.Failed, s.DropRate, s.DropSize, s.DropTopic, s.DropBad)
	}
	fmt.Fprintf(&b, "stranger dropped %d\n", m.strangers)
	return b.String()
}

// StatsOf returns the counts of peer key.
func (m *Msg) StatsOf(key string) (Stats, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[key]
	if p == nil {
		return Stats{}, false
	}
	return p.st, true
}

// sendHandler is /msg/TOPIC/send: each line written is KEY TEXT or
// * TEXT.
type sendHandler struct {
	m     *Msg
	topic string
}

func (h sendHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	if mode&3 == styx.OREAD || mode&3 == styx.OEXEC {
		return nil, plan9.ErrPerm
	}
	return sendHandle(h), nil
}

type sendHandle sendHandler

func (h sendHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrRead
}

// Write sends each line as a message; the first that fails stops the
// rest.
func (h sendHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	lines := strings.Split(strings.TrimSuffix(string(p), "\n"), "\n")
	for i, line := range lines {
		to, text, ok := strings.Cut(line, " ")
		if !ok || to == "" {
			return 0, fmt.Errorf("msg: line %d: want KEY TEXT or * TEXT", i+1)
		}
		if err := h.m.Send(ctx, h.topic, to, text); err != nil {
			if len(lines) > 1 {
				return 0, fmt.Errorf("line %d: %w", i+1, err)
			}
			return 0, err
		}
	}
	return len(p), nil
}

func (h sendHandle) Close(ctx context.Context) error { return nil }

// PeerAttach attaches key, proven by its connection, to the #msg
// service: deliver, sub and unsub. A key that is no peer of this node
// is refused (and counted).
func (m *Msg) PeerAttach(ctx context.Context, key string) (styx.File, error) {
	if !m.IsPeer(key) {
		m.mu.Lock()
		m.strangers++
		m.mu.Unlock()
		return nil, ErrNotPeer
	}
	return m.peerSrv.Attach(ctx, key, "", nil)
}

// peerTree is the #msg tree: the user of each request is the peer's
// proven key.
func (m *Msg) peerTree() *synth.Server {
	root := synth.NewDir("msg", 0555)
	root.Add(synth.NewFile("deliver", 0222, peerWrite(func(ctx context.Context, key, data string) error {
		name, text, _ := strings.Cut(strings.TrimSuffix(data, "\n"), " ")
		return m.take(key, name, text)
	})))
	subs := func(on bool) synth.Handler {
		return peerWrite(func(ctx context.Context, key, data string) error {
			return m.remoteSub(key, strings.Fields(data), on)
		})
	}
	root.Add(synth.NewFile("sub", 0222, subs(true)))
	root.Add(synth.NewFile("unsub", 0222, subs(false)))
	return synth.NewServer(root, synth.WithOwner("none"))
}

// remoteSub records that peer key subscribed to (on) or left the topics.
func (m *Msg) remoteSub(key string, topics []string, on bool) error {
	m.mu.Lock()
	p := m.peers[key]
	if p == nil {
		m.strangers++
		m.mu.Unlock()
		return ErrNotPeer
	}
	if !p.bucket.take(m.o.Now(), m.o.Rate, m.o.Burst) {
		p.st.DropRate++
		m.mu.Unlock()
		return ErrRate
	}
	fresh := 0
	for _, t := range topics {
		if !p.subs[t] {
			fresh++
		}
	}
	if on && len(p.subs)+fresh > MaxPeerTopics {
		p.st.DropBad++
		m.mu.Unlock()
		return fmt.Errorf("msg: too many topics: at most %d a peer", MaxPeerTopics)
	}
	changed := false
	for _, t := range topics {
		if !validTopic(t) {
			p.st.DropBad++
			m.mu.Unlock()
			return fmt.Errorf("%w %q", ErrBadTopic, t)
		}
		if p.subs[t] != on {
			changed = true
			if on {
				p.subs[t] = true
			} else {
				delete(p.subs, t)
			}
		}
	}
	m.mu.Unlock()
	if !changed {
		return nil
	}
	return m.save()
}

// peerWrite is a write-only file of #msg: each write is passed whole to
// do with the writing peer's key.
type peerWrite func(ctx context.Context, key, data string) error

func (w peerWrite) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	return peerHandle(w), nil
}

type peerHandle peerWrite

func (h peerHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrRead
}

func (h peerHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if err := h(ctx, synth.User(ctx), string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h peerHandle) Close(ctx context.Context) error { return nil }

// Package msg serves /msg, short messages between nodes on named
// topics, after Dat's extension messages: a node subscribes to a topic,
// tells its peers so, and then gets what they send on it in the topic's
// inbox. Messages ride on the 9P-over-TLS connection the nodes already
// share (a peer's #msg key service, reached by an import of its key):
// the sender's key is the one the connection proved, never one the text
// names. A message is a hint, not a command: each peer's messages are
// limited in size and rate, and those beyond are dropped and counted.
// See README.md.
package msg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/nodekey"
	"cheshire/styx"
	"cheshire/synth"
)

// Defaults of Options.
const (
	DefaultMaxSize = 4096             // bytes of a message's text
	DefaultRate    = 50               // messages a second from one peer
	DefaultBurst   = 100              // ... and at once
	DefaultResync  = 1 * time.Second  // how often subscriptions not yet told are retried
	DefaultTimeout = 10 * time.Second // one delivery to a peer
	inboxKeep      = 64 << 10         // bytes of an inbox's history
	// MaxPeerTopics is how many topics one peer may subscribe to here.
	MaxPeerTopics = 1024
)

// Errors of delivery, as the sender and the counts see them.
var (
	ErrTooLong   = errors.New("msg: message too long")
	ErrRate      = errors.New("msg: too many messages: dropped")
	ErrNotPeer   = errors.New("msg: permission denied: not a peer of this node")
	ErrNoTopic   = errors.New("msg: no such topic")
	ErrBadText   = errors.New("msg: bad message: control character")
	ErrBadTopic  = errors.New("msg: bad topic name")
	ErrNoSuchKey = errors.New("msg: no such peer")
)

// Options configure a Msg.
type Options struct {
	// Dir keeps the state (peers, topics, peers' subscriptions) in
	// Dir/state.
	Dir   string
	Self  string // this node's key (z-base-32)
	Owner string
	// Dial returns the root of the #msg service of the node holding key,
	// on the connection shared with it (an import by key).
	Dial     func(ctx context.Context, key string) (styx.File, error)
	MaxSize  int           // DefaultMaxSize if 0
	Rate     float64       // DefaultRate if 0
	Burst    int           // DefaultBurst if 0
	Resync   time.Duration // DefaultResync if 0
	Timeout  time.Duration // DefaultTimeout if 0
	Log      *slog.Logger
	Now      func() time.Time
	Listener func() // test hook: called after each message is taken in (nil: none)
}

// Msg is the /msg file server (Attach) and the #msg service that peers
// reach (PeerAttach).
type Msg struct {
	*synth.Server
	peerSrv *synth.Server
	o       Options
	root    *synth.Dir
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	saveMu  sync.Mutex // serialises saves of the state file

	mu        sync.Mutex
	peers     map[string]*peer  // guarded by mu: by key
	topics    map[string]*topic // guarded by mu: this node's subscriptions
	strangers uint64            // guarded by mu: attaches and writes of keys that are no peer
}

// peer is a node this one exchanges messages with.
type peer struct {
	key     string
	subs    map[string]bool // guarded by Msg.mu: topics it subscribed to here
	synced  bool            // guarded by Msg.mu: it has been told this node's topics since the last failure
	telling bool            // guarded by Msg.mu: a resync to it is under way
	bucket  bucket          // guarded by Msg.mu
	st      Stats           // guarded by Msg.mu

	dmu  sync.Mutex // held while delivering to the peer
	root styx.File  // guarded by dmu: its #msg root, or nil
	out  styx.File  // guarded by dmu: its deliver file, open, or nil
}

// Stats are the counts of one peer.
type Stats struct {
	Received  uint64 // messages taken in
	Sent      uint64 // messages delivered to it
	Failed    uint64 // deliveries to it that failed
	DropRate  uint64 // its messages dropped for exceeding the rate
	DropSize  uint64 // ... for exceeding the size
	DropTopic uint64 // ... for a topic not subscribed here
	DropBad   uint64 // ... for bad text
}

// topic is a topic this node is subscribed to.
type topic struct {
	name     string
	inbox    *synth.Log
	dir      *synth.Dir
	handlers []func(from, text string) // guarded by Msg.mu
}

// New serves /msg with the state kept in o.Dir.
//
//	/msg/ctl            subscribe TOPIC, unsubscribe TOPIC, peer add KEY, peer remove KEY; read: peers and topics
//	/msg/stats          per peer: received sent failed dropped-rate dropped-size dropped-topic dropped-bad
//	/msg/TOPIC/send     write KEY TEXT or * TEXT, a message a line
//	/msg/TOPIC/inbox    from KEY TEXT lines as they come (reads at the end wait)
//	/msg/TOPIC/peers    the peers subscribed to TOPIC
//	/msg/TOPIC/ctl      unsubscribe; read: the peers subscribed to TOPIC
//
// and, to peers (PeerAttach): deliver (TOPIC TEXT), sub (TOPIC...),
// unsub (TOPIC...).
func New(o Options) (*Msg, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Burst <= 0 {
		o.Burst = DefaultBurst
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Msg{o: o, peers: map[string]*peer{}, topics: map[string]*topic{}}
	if err := m.load(); err != nil {
		return nil, err
	}
	m.root = synth.NewDir("msg", 0555)
	m.root.Add(synth.Ctl("ctl", 0644, m.cmds(), m.ctlStatus))
	m.root.Add(synth.String("stats", 0444, m.statsText))
	m.root.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		names := make([]string, 0, len(m.topics))
		for n := range m.topics {
			names = append(names, n)
		}
		slices.Sort(names)
		out := make([]synth.Node, 0, len(names))
		for _, n := range names {
			out = append(out, m.topics[n].dir)
		}
		return out, nil
	})
	m.Server = synth.NewServer(m.root, synth.WithOwner(o.Owner))
	m.peerSrv = m.peerTree()
	m.ctx, m.stop = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.resyncLoop()
	return m, nil
}

// Close stops telling peers of subscriptions and drops the connections'
// files.
func (m *Msg) Close() {
	m.mu.Lock()
	m.stop() // under mu: resync adds to wg only before it, with mu held
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	peers := make([]*peer, 0, len(m.peers))
	for _, p := range m.peers {
		peers = append(peers, p)
	}
	for _, t := range m.topics {
		t.inbox.Close()
	}
	m.mu.Unlock()
	for _, p := range peers {
		p.dmu.Lock()
		p.drop()
		p.dmu.Unlock()
	}
}

// validTopic reports whether name may name a topic: 1 to 64 letters,
// digits, '.', '-' or '_', not starting with '.', and not a file of
// /msg.
func validTopic(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' || name == "ctl" || name == "stats" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// checkText refuses a message that is too long or has a control
// character (a newline would forge inbox lines).
func (m *Msg) checkText(text string) error {
	if len(text) > m.o.MaxSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(text), m.o.MaxSize)
	}
	for _, r := range text {
		if r < ' ' && r != '\t' || r == 0x7f {
			return ErrBadText
		}
	}
	return nil
}

// IsPeer reports whether key is a peer of this node.
func (m *Msg) IsPeer(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peers[key] != nil
}

// Peers returns the keys of the peers, sorted.
func (m *Msg) Peers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.peers))
	for k := range m.peers {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// AddPeer makes key a peer: its messages are taken in and it is told
// this node's topics.
func (m *Msg) AddPeer(key string) error {
	if _, err := nodekey.Decode(key); err != nil {
		return fmt.Errorf("msg: bad key %q", key)
	}
	if key == m.o.Self {
		return errors.New("msg: bad key: the node's own")
	}
	m.mu.Lock()
	if m.peers[key] == nil {
		m.peers[key] = &peer{key: key, subs: map[string]bool{}, bucket: newBucket(m.o.Burst, m.o.Now())}
	}
	m.mu.Unlock()
	return m.save()
}

// RemovePeer forgets key.
func (m *Msg) RemovePeer(key string) error {
	m.mu.Lock()
	p := m.peers[key]
	delete(m.peers, key)
	m.mu.Unlock()
	if p == nil {
		return ErrNoSuchKey
	}
	p.dmu.Lock()
	p.drop()
	p.dmu.Unlock()
	return m.save()
}

// Subscribe subscribes this node to name; its peers are told at once,
// and again until each has heard it.
func (m *Msg) Subscribe(name string) error {
	if !validTopic(name) {
		return fmt.Errorf("%w %q", ErrBadTopic, name)
	}
	m.mu.Lock()
	if m.topics[name] == nil {
		m.topics[name] = m.newTopic(name)
		for _, p := range m.peers {
			p.synced = false
		}
	}
	m.mu.Unlock()
	if err := m.save(); err != nil {
		return err
	}
	m.resync(m.ctx)
	return nil
}

// Listen subscribes to name (Subscribe) and calls fn with each message
// taken in on it, after it is in the inbox. fn must not block for long:
// it runs in the delivering peer's request.
func (m *Msg) Listen(name string, fn func(from, text string)) error {
	if err := m.Subscribe(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.topics[name]
	if t == nil {
		return ErrNoTopic
	}
	t.handlers = append(t.handlers, fn)
	return nil
}

// Unsubscribe ends this node's subscription to name and tells the
// peers (those not reached drop what they send on it, counted).
func (m *Msg) Unsubscribe(name string) error {
	m.mu.Lock()
	t := m.topics[name]
	delete(m.topics, name)
	peers := m.peerList()
	m.mu.Unlock()
	if t == nil {
		return fmt.Errorf("%w %q", ErrNoTopic, name)
	}
	t.inbox.Close()
	if err := m.save(); err != nil {
		return err
	}
	m.fanOut(m.ctx, peers, func(ctx context.Context, p *peer) error { return m.writePeer(ctx, p, "unsub", name) })
	return nil
}

func (m *Msg) peerList() []*peer {
	out := make([]*peer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	return out
}

func (m *Msg) newTopic(name string) *topic {
	t := &topic{name: name, inbox: synth.NewLog(inboxKeep)}
	t.dir = synth.NewDir(name, 0555)
	t.dir.Add(synth.NewFile("send", 0200, sendHandler{m, name}))
	t.dir.Add(t.inbox.FollowFile("inbox", 0444))
	peers := func(ctx context.Context) string {
		var b strings.Builder
		for _, k := range m.Subscribers(name) {
			b.WriteString(k + "\n")
		}
		return b.String()
	}
	t.dir.Add(synth.String("peers", 0444, peers))
	t.dir.Add(synth.Ctl("ctl", 0644, []synth.Cmd{
		{Name: "unsubscribe", Run: func(ctx context.Context, a []string) error { return m.Unsubscribe(name) }},
	}, peers))
	return t
}

// Subscribers returns the peers subscribed to topic name, sorted.
func (m *Msg) Subscribers(name string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k, p := range m.peers {
		if p.subs[name] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// take takes in a message from key on topic name (a peer's deliver).
func (m *Msg) take(from, name, text string) error {
	m.mu.Lock()
	p := m.peers[from]
	if p == nil {
		m.mu.Unlock()
		return ErrNotPeer
	}
	var err error
	t := m.topics[name]
	switch {
	case len(text) > m.o.MaxSize:
		p.st.DropSize++
		err = ErrTooLong
	case !p.bucket.take(m.o.Now(), m.o.Rate, m.o.Burst):
		p.st.DropRate++
		err = ErrRate
	case m.checkText(text) != nil:
		p.st.DropBad++
		err = ErrBadText
	case t == nil:
		p.st.DropTopic++
		err = fmt.Errorf("%w %q", ErrNoTopic, name)
	default:
		p.st.Received++
	}
	var handlers []func(from, text string)
	if t != nil {
		handlers = slices.Clone(t.handlers)
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	t.inbox.Write([]byte("from " + from + " " + text + "\n"))
	for _, h := range handlers {
		h(from, text)
	}
	if m.o.Listener != nil {
		m.o.Listener()
	}
	return nil
}

// short is a key cut to 8 characters for error strings.
func short(key string) string {
	if len(key) > 8 {
		return key[:8]
	}
	return key
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

func newBucket(burst int, now time.Time) bucket { return bucket{tokens: float64(burst), last: now} }

// take takes a token if there is one, refilling at rate a second up to
// burst.
func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(burst), b.tokens+el.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

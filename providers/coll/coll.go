// Package coll serves /coll, typed collections replicated between nodes
// as sets of signed deltas, after the Rhizome design: every change is a
// delta {entity, property, value, author, time} signed with the node's
// key, appended to the collection (on disk, fsynced, before the write
// returns) and sent to the peers subscribed to it; a node that missed
// some catches up by comparing sums with its peers and fetching theirs.
// The state is the set of deltas, so every view is a function of the set
// and replicas that hold the same set show the same values, whatever
// order the deltas came in. Views are lossless (every delta of a
// property, history/) and lossy (entities/, one value a property, by the
// resolver the schema names). See README.md.
package coll

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"
	"cheshire/nodekey"
	"cheshire/synth"
)

// Defaults of Options.
const (
	DefaultSyncEvery = 2 * time.Second
	// MaxSkew is how far in the future a delta's time may be.
	MaxSkew = 5 * time.Minute
)

// Options configure a Coll.
type Options struct {
	Dir   string // collections in Dir/NAME/{schema,deltas}
	Key   ed25519.PrivateKey
	Owner string
	// Send sends text on topic to the peer to, or to every peer
	// subscribed to it with to "*" (msg's Send).
	Send func(ctx context.Context, topic, to, text string) error
	// Listen subscribes to topic, fn getting each message taken in and
	// its sender's proven key (msg's Listen).
	Listen func(topic string, fn func(from, text string)) error
	// Fetch reads the deltas file of collection name at the node holding
	// key (its #coll service).
	Fetch     func(ctx context.Context, key, name string) ([]byte, error)
	SyncEvery time.Duration // DefaultSyncEvery if 0
	Now       func() time.Time
	Log       *slog.Logger
}

// Coll is the /coll file server.
type Coll struct {
	*synth.Server
	o       Options
	self    string
	root    *synth.Dir
	peerSrv *synth.Server
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	out     chan outMsg // deltas to send, in order

	mu     sync.Mutex
	colls  map[string]*collection // guarded by mu
	closed bool                   // guarded by mu: no more fetches start
}

// outMsg is a message to send.
type outMsg struct{ topic, to, text string }

// Stats are the counts of a collection.
type Stats struct {
	Accepted  uint64 // new deltas taken in (local writes included)
	Duplicate uint64 // deltas already held
	BadSig    uint64 // refused: signature does not verify
	Future    uint64 // refused: time more than MaxSkew ahead
	BadValue  uint64 // refused: value not of the property's type, unknown property, bad form
	Fetches   uint64 // catch-ups from a peer
}

// collection is one collection: its schema and set of deltas.
type collection struct {
	name   string
	fields map[string]field // guarded by Coll.mu
	order  []string         // guarded by Coll.mu: field names in order of creation
	deltas map[[32]byte]*Delta
	byEnt  map[string]map[string][]*Delta // entity → property (or Tombstone) → deltas in order
	sum    [32]byte                       // xor of the deltas' hashes
	st     Stats
	file   *os.File // the deltas file, appended to
	dir    *synth.Dir

	pending map[string]bool // guarded by Coll.mu: entities made (mkdir) that have no delta yet

	fmu      sync.Mutex // serialises appends to file (held without Coll.mu)
	fetching map[string]bool
}

// New opens the collections in o.Dir and serves them.
//
//	/coll/ctl                      create NAME FIELD:TYPE[:RESOLVER]..., schema NAME FIELD:TYPE[:RESOLVER]..., resolver NAME PROP RESOLVER
//	/coll/NAME/schema              FIELD TYPE RESOLVER lines
//	/coll/NAME/deltas              every delta, a line each; write delta lines to merge them
//	/coll/NAME/stats               counts
//	/coll/NAME/entities/ID/PROP    the resolved value; write: a new delta
//	/coll/NAME/history/ID/PROP     every delta of the property: TIME AUTHOR VALUE lines
func New(o Options) (*Coll, error) {
	if o.SyncEvery <= 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("coll: no node key")
	}
	c := &Coll{o: o, self: nodekey.Encode(o.Key.Public().(ed25519.PublicKey)), colls: map[string]*collection{},
		out: make(chan outMsg, 1024)}
	c.root = synth.NewDir("coll", 0755)
	c.root.Add(synth.Ctl("ctl", 0644, c.cmds(), nil))
	c.root.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := make([]synth.Node, 0, len(c.colls))
		for _, n := range slices.Sorted(maps.Keys(c.colls)) {
			out = append(out, c.colls[n].dir)
		}
		return out, nil
	})
	c.Server = synth.NewServer(c.root, synth.WithOwner(o.Owner))
	c.peerSrv = c.peerTree()
	ents, err := os.ReadDir(o.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("coll: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !validName(e.Name()) {
			continue
		}
		col, err := c.open(e.Name())
		if err != nil {
			c.closeFiles()
			return nil, err
		}
		c.colls[col.name] = col
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	for _, col := range c.colls {
		c.listen(col.name)
	}
	c.wg.Add(2)
	go c.sendLoop()
	go c.syncLoop()
	return c, nil
}

// Close stops replication and closes the files.
func (c *Coll) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	c.closeFiles()
}

func (c *Coll) closeFiles() {
	c.mu.Lock()
	cols := make([]*collection, 0, len(c.colls))
	for _, col := range c.colls {
		cols = append(cols, col)
	}
	c.mu.Unlock() // fmu is taken before mu, never after
	for _, col := range cols {
		col.fmu.Lock()
		col.file.Close()
		col.fmu.Unlock()
	}
}

// Self is the node's key, the author of its deltas.
func (c *Coll) Self() string { return c.self }

func (c *Coll) dirOf(name string) string { return filepath.Join(c.o.Dir, name) }

func (c *Coll) newCollection(name string) *collection {
	col := &collection{name: name, fields: map[string]field{}, deltas: map[[32]byte]*Delta{},
		byEnt: map[string]map[string][]*Delta{}, fetching: map[string]bool{},
		pending: map[string]bool{}}
	col.dir = c.collDir(col)
	return col
}

// Create makes collection name with fields (FIELD:TYPE[:RESOLVER]).
func (c *Coll) Create(name string, fields []string) error {
	if !validName(name) {
		return fmt.Errorf("coll: bad collection name %q", name)
	}
	c.mu.Lock()
	_, exists := c.colls[name]
	c.mu.Unlock()
	if exists {
		return fmt.Errorf("coll: collection %s already exists", name)
	}
	col := c.newCollection(name)
	for _, s := range fields {
		fname, f, err := parseField(s)
		if err != nil {
			return err
		}
		if _, dup := col.fields[fname]; dup {
			return fmt.Errorf("coll: duplicate field %s", fname)
		}
		col.fields[fname] = f
		col.order = append(col.order, fname)
	}
	if err := os.MkdirAll(c.dirOf(name), 0700); err != nil {
		return fmt.Errorf("coll: %w", err)
	}
	if err := c.saveSchema(col); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(c.dirOf(name), "deltas"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0600)
	if err != nil {
		return fmt.Errorf("coll: %w", err)
	}
	col.file = f
	atomicfile.SyncDir(c.dirOf(name))
	c.mu.Lock()
	if _, exists := c.colls[name]; exists {
		c.mu.Unlock()
		f.Close()
		return fmt.Errorf("coll: collection %s already exists", name)
	}
	c.colls[name] = col
	c.mu.Unlock()
	c.listen(name)
	return nil
}

// SetSchema changes the fields of collection name: new fields are
// added, named ones changed. A field's type may not change while the
// collection holds deltas of it.
func (c *Coll) SetSchema(name string, fields []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return fmt.Errorf("%w %s", ErrNoColl, name)
	}
	next := maps.Clone(col.fields) // col.fields is never nil: made at creation
	order := slices.Clone(col.order)
	for _, s := range fields {
		fname, f, err := parseField(s)
		if err != nil {
			return err
		}
		if old, ok := next[fname]; ok {
			if old.Type != f.Type && col.hasData(fname) {
				return fmt.Errorf("coll: %s: bad schema change: type of %s may not change from %s to %s while the collection holds values of it", name, fname, old.Type, f.Type)
			}
		} else {
			order = append(order, fname)
		}
		next[fname] = f
	}
	old, oldOrder := col.fields, col.order
	col.fields, col.order = next, order
	if err := c.saveSchema(col); err != nil {
		col.fields, col.order = old, oldOrder
		return err
	}
	return nil
}

// SetResolver names the resolver of property prop of collection name.
func (c *Coll) SetResolver(name, prop, resolver string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return fmt.Errorf("%w %s", ErrNoColl, name)
	}
	f, ok := col.fields[prop]
	if !ok {
		return fmt.Errorf("%w %s", ErrNoField, prop)
	}
	if err := resolverFits(resolver, f.Type); err != nil {
		return err
	}
	old := f
	f.Resolver = resolver
	col.fields[prop] = f
	if err := c.saveSchema(col); err != nil {
		col.fields[prop] = old
		return err
	}
	return nil
}

// hasData reports whether col holds a delta of property prop.
func (col *collection) hasData(prop string) bool {
	for _, props := range col.byEnt {
		if len(props[prop]) > 0 {
			return true
		}
	}
	return false
}

// check judges d against col's schema and the clock. Coll.mu is held
// (or col is not yet shared).
func (col *collection) check(d *Delta, now time.Time) error {
	if err := col.checkSchema(d); err != nil {
		return err
	}
	return checkSigned(d, now)
}

// checkSchema judges d against col's schema. Coll.mu is held (or col
// is not yet shared).
func (col *collection) checkSchema(d *Delta) error {
	if d.Coll != col.name {
		return fmt.Errorf("%w %s", ErrNoColl, d.Coll)
	}
	if d.Prop != Tombstone {
		f, ok := col.fields[d.Prop]
		if !ok {
			return fmt.Errorf("%w %s", ErrNoField, d.Prop)
		}
		if err := checkType(f.Type, d.Value); err != nil {
			return err
		}
	} else if d.Value != "" {
		return fmt.Errorf("%w: a tombstone has no value", ErrBadValue)
	}
	return nil
}

// checkSigned judges d's time against the clock and its signature.
func checkSigned(d *Delta, now time.Time) error {
	if d.Time > now.Add(MaxSkew).UnixNano() {
		return ErrFuture
	}
	return d.Verify()
}

// count counts a refused delta by its error.
func (col *collection) count(err error) {
	switch {
	case errors.Is(err, ErrSignature):
		col.st.BadSig++
	case errors.Is(err, ErrFuture):
		col.st.Future++
	default:
		col.st.BadValue++
	}
}

// add puts d in col's set, unless it is there; it reports whether it
// was new.
func (col *collection) add(d *Delta) bool {
	h := d.Hash()
	if _, ok := col.deltas[h]; ok {
		col.st.Duplicate++
		return false
	}
	col.deltas[h] = d
	delete(col.pending, d.Entity)
	for i := range h {
		col.sum[i] ^= h[i]
	}
	props := col.byEnt[d.Entity]
	if props == nil {
		props = map[string][]*Delta{}
		col.byEnt[d.Entity] = props
	}
	ds := props[d.Prop]
	i, _ := slices.BinarySearchFunc(ds, d, order)
	props[d.Prop] = slices.Insert(ds, i, d)
	col.st.Accepted++
	return true
}

// Put writes a new delta of entity's property prop (Tombstone: the
// entity deleted), signed by this node, and returns once it is on disk;
// it is then sent to the collection's peers.
func (c *Coll) Put(ctx context.Context, name, entity, prop, value string) error {
	if !validName(entity) {
		return fmt.Errorf("coll: bad entity name %q", entity)
	}
	if err := checkValue(value); err != nil {
		return err
	}
	d := &Delta{Coll: name, Entity: entity, Prop: prop, Value: value, Author: c.self}
	c.mu.Lock()
	col := c.colls[name]
	if col == nil {
		c.mu.Unlock()
		return fmt.Errorf("%w %s", ErrNoColl, name)
	}
	// Times of this node's deltas grow, so that its later write wins
	// over its earlier ones however close they are.
	d.Time = max(c.o.Now().UnixNano(), col.lastOwn(entity, prop, c.self)+1)
	d.Sign(c.o.Key)
	err := col.check(d, c.o.Now())
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if _, err := c.merge(col, []*Delta{d}); err != nil {
		return err
	}
	c.queue(outMsg{topic: topicOf(name), to: "*", text: d.String()})
	return nil
}

// lastOwn is the time of author's latest delta of entity's prop. Coll.mu
// is held.
func (col *collection) lastOwn(entity, prop, author string) int64 {
	var t int64
	for _, d := range col.byEnt[entity][prop] {
		if d.Author == author {
			t = max(t, d.Time)
		}
	}
	return t
}

// Merge takes in delta lines (from a peer, or written to NAME/deltas):
// each is checked (form, schema, time, signature); those refused are
// counted, and the first refusal is returned after the others are
// merged.
func (c *Coll) Merge(name string, text string) (int, error) {
	c.mu.Lock()
	col := c.colls[name]
	c.mu.Unlock()
	if col == nil {
		return 0, fmt.Errorf("%w %s", ErrNoColl, name)
	}
	var cands []*Delta
	var first error
	c.mu.Lock()
	for line := range strings.SplitSeq(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		d, err := ParseDelta(line)
		if err == nil {
			if _, held := col.deltas[d.Hash()]; held {
				col.st.Duplicate++ // its signature was checked when it came
				continue
			}
			err = col.checkSchema(d)
		}
		if err != nil {
			col.count(err)
			first = cmp.Or(first, err)
			continue
		}
		cands = append(cands, d)
	}
	c.mu.Unlock()
	// Signatures are checked without the lock, so that readers do not
	// wait for a catch-up.
	now := c.o.Now()
	var ok []*Delta
	var refused []error
	for _, d := range cands {
		if err := checkSigned(d, now); err != nil {
			refused = append(refused, err)
			first = cmp.Or(first, err)
			continue
		}
		ok = append(ok, d)
	}
	if len(refused) > 0 {
		c.mu.Lock()
		for _, err := range refused {
			col.count(err)
		}
		c.mu.Unlock()
	}
	n, err := c.merge(col, ok)
	if err != nil {
		return n, err
	}
	return n, first
}

// Sum is the count of collection name's deltas and the xor of their
// hashes, in hex: two replicas with the same sum hold the same set.
func (c *Coll) Sum(name string) (int, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return 0, "", false
	}
	return len(col.deltas), hex.EncodeToString(col.sum[:]), true
}

// StatsOf returns the counts of collection name.
func (c *Coll) StatsOf(name string) (Stats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return Stats{}, false
	}
	return col.st, true
}

// live returns the deltas of entity's prop that its latest tombstone
// has not deleted, in order. Coll.mu is held.
func (col *collection) live(entity, prop string) []*Delta {
	props := col.byEnt[entity]
	ds := props[prop]
	if tomb := props[Tombstone]; len(tomb) > 0 {
		last := tomb[len(tomb)-1]
		i, _ := slices.BinarySearchFunc(ds, last, order)
		ds = ds[i:]
	}
	return ds
}

// Entity returns the resolved values of entity's properties that have
// any, and whether it has one.
func (c *Coll) Entity(name, entity string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return nil, fmt.Errorf("%w %s", ErrNoColl, name)
	}
	out := map[string]string{}
	for _, p := range col.order {
		if ds := col.live(entity, p); len(ds) > 0 {
			out[p] = resolve(col.fields[p], ds)
		}
	}
	return out, nil
}

// entities lists the entities of col with a live delta. Coll.mu is held.
func (col *collection) entities() []string {
	var out []string
	for e, props := range col.byEnt {
		for p := range props {
			if p != Tombstone && len(col.live(e, p)) > 0 {
				out = append(out, e)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

package coll

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

func (c *Coll) cmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "create", Min: 1, Max: -1, Usage: "create NAME FIELD:TYPE[:RESOLVER]...",
			Run: func(ctx context.Context, a []string) error { return c.Create(a[0], a[1:]) }},
		{Name: "schema", Min: 2, Max: -1, Usage: "schema NAME FIELD:TYPE[:RESOLVER]...",
			Run: func(ctx context.Context, a []string) error { return c.SetSchema(a[0], a[1:]) }},
		{Name: "resolver", Min: 3, Max: 3, Usage: "resolver NAME PROP RESOLVER",
			Run: func(ctx context.Context, a []string) error { return c.SetResolver(a[0], a[1], a[2]) }},
	}
}

// collDir is the directory /coll/NAME.
func (c *Coll) collDir(col *collection) *synth.Dir {
	name := col.name
	d := synth.NewDir(name, 0755)
	d.Add(synth.String("schema", 0444, func(ctx context.Context) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		var b strings.Builder
		for _, n := range col.order {
			f := col.fields[n]
			fmt.Fprintf(&b, "%s %s %s\n", n, f.Type, f.Resolver)
		}
		return b.String()
	}))
	d.Add(synth.NewFile("deltas", 0644, deltasHandler{c, name}))
	d.Add(synth.String("stats", 0444, func(ctx context.Context) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		s := col.st
		n := len(col.deltas)
		return fmt.Sprintf("deltas %d\nsum %x\naccepted %d\nduplicate %d\nbad-signature %d\nfuture %d\nbad-value %d\nfetches %d\n",
			n, col.sum, s.Accepted, s.Duplicate, s.BadSig, s.Future, s.BadValue, s.Fetches)
	}))
	ents := synth.NewDir("entities", 0755)
	ents.SetGen(synth.GenNames(func(ctx context.Context) []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		names := col.entities()
		for id := range col.pending {
			if !slices.Contains(names, id) {
				names = append(names, id)
			}
		}
		slices.Sort(names)
		return names
	}, func(id string) synth.Node { return c.entityDir(col, id) }))
	// An entity is made by making its directory (mkdir), then writing
	// its properties; it is kept once it has a delta.
	ents.SetCreate(func(ctx context.Context, id string, perm uint32, mode uint8) (synth.Node, error) {
		if perm&styx.DMDIR == 0 || !validName(id) {
			return nil, fmt.Errorf("coll: bad entity %q: entities are directories (mkdir)", id)
		}
		c.mu.Lock()
		col.pending[id] = true
		c.mu.Unlock()
		return c.entityDir(col, id), nil
	})
	ents.SetRemove(func(ctx context.Context, id string) error {
		c.mu.Lock()
		delete(col.pending, id)
		c.mu.Unlock()
		return c.Put(ctx, name, id, Tombstone, "")
	})
	d.Add(ents)
	hist := synth.NewDir("history", 0555)
	hist.SetGen(synth.GenNames(func(ctx context.Context) []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Sorted(maps.Keys(col.byEnt))
	}, func(id string) synth.Node { return c.historyDir(col, id) }))
	d.Add(hist)
	return d
}

// entityDir is /coll/NAME/entities/ID: a file a property of the schema.
func (c *Coll) entityDir(col *collection, id string) synth.Node {
	d := synth.NewDir(id, 0755)
	d.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		c.mu.Lock()
		props := append([]string(nil), col.order...)
		c.mu.Unlock()
		out := make([]synth.Node, 0, len(props))
		for _, p := range props {
			out = append(out, synth.NewFile(p, 0644, propHandler{c, col, id, p}))
		}
		return out, nil
	})
	return d
}

// historyDir is /coll/NAME/history/ID: a file a property with deltas.
func (c *Coll) historyDir(col *collection, id string) synth.Node {
	d := synth.NewDir(id, 0555)
	d.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		c.mu.Lock()
		props := slices.Sorted(maps.Keys(col.byEnt[id]))
		c.mu.Unlock()
		out := make([]synth.Node, 0, len(props))
		for _, p := range props {
			name := p
			if p == Tombstone {
				name = "deleted"
			}
			out = append(out, synth.String(name, 0444, func(ctx context.Context) string {
				c.mu.Lock()
				defer c.mu.Unlock()
				var b strings.Builder
				for _, d := range col.byEnt[id][p] {
					fmt.Fprintf(&b, "%s %s %s\n", time.Unix(0, d.Time).UTC().Format(time.RFC3339Nano), d.Author, plan9.Quote(d.Value))
				}
				return b.String()
			}))
		}
		return out, nil
	})
	return d
}

// propHandler is /coll/NAME/entities/ID/PROP: reads the resolved value,
// a write makes a delta.
type propHandler struct {
	c    *Coll
	col  *collection
	id   string
	prop string
}

func (h propHandler) value() []byte {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	ds := h.col.live(h.id, h.prop)
	if len(ds) == 0 {
		return nil
	}
	return []byte(resolve(h.col.fields[h.prop], ds) + "\n")
}

func (h propHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	return &propHandle{h: h, val: h.value()}, nil
}

func (h propHandler) Length(ctx context.Context) int64 { return int64(len(h.value())) }

// Truncate accepts the truncation of an open for writing (the write
// that follows makes the delta).
func (h propHandler) Truncate(ctx context.Context, size int64) error { return nil }

type propHandle struct {
	h   propHandler
	val []byte
}

func (p *propHandle) Read(ctx context.Context, b []byte, off int64) (int, error) {
	if off >= int64(len(p.val)) {
		return 0, nil
	}
	return copy(b, p.val[off:]), nil
}

// Write makes a delta of the value written (one trailing newline
// dropped); it returns once the delta is on disk.
func (p *propHandle) Write(ctx context.Context, b []byte, off int64) (int, error) {
	if off != 0 {
		return 0, fmt.Errorf("coll: %w: write a value whole, at offset 0", plan9.ErrBadOffset)
	}
	v := strings.TrimSuffix(string(b), "\n")
	if err := p.h.c.Put(ctx, p.h.col.name, p.h.id, p.h.prop, v); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *propHandle) Close(ctx context.Context) error { return nil }

// deltasHandler is /coll/NAME/deltas: reads every delta; the lines
// written are merged (Merge).
type deltasHandler struct {
	c    *Coll
	name string
}

func (h deltasHandler) Open(ctx context.Context, mode uint8) (synth.Handle, error) {
	var data []byte
	if mode&3 == styx.OREAD || mode&3 == styx.ORDWR {
		data = h.c.deltasText(h.name)
	}
	return &deltasHandle{h: h, data: data}, nil
}

// Truncate accepts the truncation of an open for writing: writes merge,
// they replace nothing.
func (h deltasHandler) Truncate(ctx context.Context, size int64) error { return nil }

type deltasHandle struct {
	h       deltasHandler
	data    []byte
	partial string // a line not yet ended
}

func (d *deltasHandle) Read(ctx context.Context, b []byte, off int64) (int, error) {
	if off >= int64(len(d.data)) {
		return 0, nil
	}
	return copy(b, d.data[off:]), nil
}

func (d *deltasHandle) Write(ctx context.Context, b []byte, off int64) (int, error) {
	text := d.partial + string(b)
	i := strings.LastIndexByte(text, '\n')
	d.partial = text[i+1:]
	if len(d.partial) > 4*MaxValue {
		d.partial = ""
		return 0, fmt.Errorf("%w: line too long", ErrBadDelta)
	}
	if _, err := d.h.c.Merge(d.h.name, text[:i+1]); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close merges a last line written without its newline.
func (d *deltasHandle) Close(ctx context.Context) error {
	if strings.TrimSpace(d.partial) == "" {
		return nil
	}
	_, err := d.h.c.Merge(d.h.name, d.partial)
	return err
}

// deltasText is every delta of collection name, in order of time.
func (c *Coll) deltasText(name string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.colls[name]
	if col == nil {
		return nil
	}
	all := make([]*Delta, 0, len(col.deltas))
	for _, d := range col.deltas {
		all = append(all, d)
	}
	sortDeltas(all)
	var b strings.Builder
	for _, d := range all {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// PeerAttach gives a peer (its key proven by the connection; cmd checks
// that it is a peer) the #coll service: NAME/deltas, read-only, for
// catching up.
func (c *Coll) PeerAttach(ctx context.Context, key string) (styx.File, error) {
	return c.peerSrv.Attach(ctx, key, "", nil)
}

func (c *Coll) peerTree() *synth.Server {
	root := synth.NewDir("coll", 0555)
	root.SetGen(synth.GenNames(func(ctx context.Context) []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Sorted(maps.Keys(c.colls))
	}, func(name string) synth.Node {
		d := synth.NewDir(name, 0555)
		d.Add(synth.Snapshot("deltas", 0444, func(ctx context.Context) ([]byte, error) { return c.deltasText(name), nil }))
		return d
	}))
	return synth.NewServer(root, synth.WithOwner("none"))
}

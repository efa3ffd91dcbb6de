package coll

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// topicOf is the msg topic of collection name.
func topicOf(name string) string { return "coll." + name }

// listen subscribes to the topic of collection name.
func (c *Coll) listen(name string) {
	if c.o.Listen == nil {
		return
	}
	if err := c.o.Listen(topicOf(name), func(from, text string) { c.onMessage(name, from, text) }); err != nil {
		c.o.Log.Warn("collection not replicated", "coll", name, "err", err)
	}
	c.queueSum(name, "*", false)
}

// queue puts a message on the send queue; when the queue is full it is
// dropped, and the next exchange of sums makes up for it.
func (c *Coll) queue(m outMsg) {
	if c.o.Send == nil {
		return
	}
	select {
	case c.out <- m:
	default:
	}
}

// queueSum sends collection name's sum to to ("*": every peer); a reply
// is marked so, and never answered.
func (c *Coll) queueSum(name, to string, reply bool) {
	n, sum, ok := c.Sum(name)
	if !ok {
		return
	}
	text := "sum " + strconv.Itoa(n) + " " + sum
	if reply {
		text += " reply"
	}
	c.queue(outMsg{topic: topicOf(name), to: to, text: text})
}

// sendLoop sends the queued messages in order.
func (c *Coll) sendLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case m := <-c.out:
			if err := c.o.Send(c.ctx, m.topic, m.to, m.text); err != nil {
				c.o.Log.Debug("coll message not sent", "topic", m.topic, "to", m.to, "err", err)
			}
		}
	}
}

// syncLoop sends every collection's sum to its peers every SyncEvery:
// a peer that holds another set fetches this node's deltas, and tells
// its own sum back, so that this node fetches its.
func (c *Coll) syncLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.o.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		names := slices.Sorted(maps.Keys(c.colls))
		c.mu.Unlock()
		for _, n := range names {
			c.queueSum(n, "*", false)
		}
	}
}

// onMessage takes in a message on collection name's topic: a delta, or
// a peer's sum.
func (c *Coll) onMessage(name, from, text string) {
	switch {
	case strings.HasPrefix(text, "delta "):
		if _, err := c.Merge(name, text); err != nil {
			c.o.Log.Debug("delta refused", "coll", name, "from", from, "err", err)
		}
	case strings.HasPrefix(text, "sum "):
		f := strings.Fields(text)
		if len(f) < 3 {
			return
		}
		_, mine, ok := c.Sum(name)
		if !ok || f[2] == mine {
			return
		}
		c.fetch(name, from, len(f) > 3 && f[3] == "reply")
	}
}

// fetch catches collection name up from peer key, once at a time per
// peer: it reads the peer's deltas and merges them. If the sums still
// differ (this node holds deltas the peer lacks), it tells the peer its
// sum, unless the peer's was itself a reply.
func (c *Coll) fetch(name, key string, wasReply bool) {
	if c.o.Fetch == nil {
		return
	}
	c.mu.Lock()
	col := c.colls[name]
	if col == nil || col.fetching[key] || c.closed {
		c.mu.Unlock()
		return
	}
	col.fetching[key] = true
	col.st.Fetches++
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(col.fetching, key)
			c.mu.Unlock()
		}()
		data, err := c.o.Fetch(c.ctx, key, name)
		if err != nil {
			c.o.Log.Debug("catch-up failed", "coll", name, "from", key, "err", err)
			return
		}
		if _, err := c.Merge(name, string(data)); err != nil {
			c.o.Log.Debug("catch-up: deltas refused", "coll", name, "from", key, "err", err)
		}
		if !wasReply {
			c.queueSum(name, key, true)
		}
	}()
}

// sortDeltas sorts ds by order.
func sortDeltas(ds []*Delta) { slices.SortFunc(ds, order) }

// Package node serves /node, the node itself as files: id (its public key,
// the name other nodes know it by), addrs (the dial strings it listens
// on), version, uptime, log, an event file of the node's log lines, and
// requests, the queue of what keys ask the node's owner to approve.
package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cheshire/synth"
)

// Node is the /node file server.
type Node struct {
	*synth.Server
	log *synth.Log
}

// Config describes the node to serve.
type Config struct {
	ID      string // the node's public key in z-base-32
	Version string
	Addrs   func() []string // current listening addresses, as dial strings
	Start   time.Time
	Owner   string
	Log     *synth.Log // the node log (see LogHandler)
	// Counters, if set, are the node's running counts (requests served
	// by 9P, HTTPS, DNS, ...), read by /node/stats.
	Counters func() map[string]uint64
	// Requests, if set, is the approvals queue served at /node/requests.
	Requests *Requests
	// Passwords, if set, are the web sign-in's passwords, each user's
	// set by writing /node/password.
	Passwords *Passwords
}

// New builds the tree:
//
//	/node/id       the node's public key in z-base-32
//	/node/addrs    one dial string a line
//	/node/version  the program version
//	/node/uptime   seconds since start
//	/node/stats    the node's running counts, "NAME N" a line (requests by 9P, HTTPS, DNS)
//	/node/log        the log: recent lines, up to now (tail -f follows it)
//	/node/logfollow  the same, then new lines as they come (cat follows it)
//	/node/requests/  the approvals queue, if Config.Requests is set (see Requests.Dir)
//	/node/password   write-only: the attaching user's password for the web sign-in, if Config.Passwords is set
func New(c Config) *Node {
	root := synth.NewDir("node", 0555)
	now := time.Now
	root.Add(synth.Static("id", 0444, []byte(c.ID+"\n")))
	root.Add(synth.String("addrs", 0444, func(ctx context.Context) string {
		var b strings.Builder
		for _, a := range c.Addrs() {
			b.WriteString(a)
			b.WriteByte('\n')
		}
		return b.String()
	}))
	root.Add(synth.Static("version", 0444, []byte(c.Version+"\n")))
	root.Add(synth.String("uptime", 0444, func(ctx context.Context) string {
		return fmt.Sprintf("%d\n", int64(now().Sub(c.Start).Seconds()))
	}))
	root.Add(synth.String("stats", 0444, func(ctx context.Context) string {
		if c.Counters == nil {
			return ""
		}
		m := c.Counters()
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(&b, "%s %d\n", k, m[k])
		}
		return b.String()
	}))
	root.Add(c.Log.File("log", 0444))
	root.Add(c.Log.FollowFile("logfollow", 0444))
	if c.Requests != nil {
		root.Add(c.Requests.Dir())
	}
	if c.Passwords != nil {
		root.Add(c.Passwords.passwordFile())
	}
	return &Node{Server: synth.NewServer(root, synth.WithOwner(c.Owner)), log: c.Log}
}

// Package dht serves the files of a DHT node (cheshire/dht) at /dht,
// and is the dht module:
//
//	status	node id, listen address, table size, counts
//	peers	the routing table, a node a line
//	records/KEY	the last record fetched (or published) for KEY
//	ctl	lookup KEY, find PATH, announce PATH [PORT], republish
//
// See README.md.
package dht

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	dhtlib "cheshire/dht"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/synth"
)

// cmdTimeout bounds one ctl command.
const cmdTimeout = time.Minute

// Files returns the file tree of node n, owned by owner:
//
//	status	node id, listen address, table size, counts
//	peers	the routing table, a node a line
//	records/KEY	the last record fetched (or published) for KEY
//	ctl	lookup KEY, find PATH, announce PATH [PORT], republish
//
// Each open of ctl keeps the answer of the last command written to it,
// read from offset 0 on the same fid.
func Files(n *dhtlib.Node, owner string) *synth.Server {
	root := synth.NewDir("", 0555)
	must := func(err error) {
		if err != nil {
			panic(err) // static names: cannot fail
		}
	}
	must(root.Add(synth.String("status", 0444, func(context.Context) string { return statusText(n) })))
	must(root.Add(synth.String("peers", 0444, func(context.Context) string { return peersText(n) })))
	records := synth.NewDir("records", 0555)
	records.SetGen(synth.GenNames(func(context.Context) []string { return n.RecordKeys() }, func(k string) synth.Node { return recordFile(n, k) }))
	must(root.Add(records))
	must(root.Add(synth.Query("ctl", 0660, ctlAnswer(n))))
	return synth.NewServer(root, synth.WithOwner(owner))
}

// statusText is the content of status.
func statusText(n *dhtlib.Node) string {
	st := n.Stats()
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s %v\n", k, v) }
	kv("key", nodekey.Encode(n.PublicKey()))
	kv("id", fmt.Sprintf("%x", n.ID()))
	kv("listen", "udp!"+n.Addr().Addr().String()+"!"+strconv.Itoa(int(n.Addr().Port())))
	kv("nodes", st.Nodes)
	kv("good", st.GoodNodes)
	kv("quiet", st.Quiet)
	kv("published", st.Published)
	kv("fetched", st.Fetched)
	kv("forged", st.Forged)
	kv("stale", st.Stale)
	kv("malformed", st.Malformed)
	kv("announced", st.Announced)
	kv("found", st.Found)
	if seq, stored, ok := n.Own(); ok {
		kv("seq", seq)
		kv("stored", stored)
	}
	b.WriteString(advertText(n.AdvertStatus()))
	return b.String()
}

// advertText is the advert's lines of status: "advert published seq N
// stored S", "advert error ...", "advert retry 4s", "advert paths P..."
// and "advert port N".
func advertText(s dhtlib.AdvertStatus) string {
	var b strings.Builder
	if s.Seq != 0 {
		fmt.Fprintf(&b, "advert published seq %d stored %d\n", s.Seq, s.Stored)
	}
	if s.Err != "" {
		fmt.Fprintf(&b, "advert error %s\n", s.Err)
	}
	if s.Retry > 0 {
		fmt.Fprintf(&b, "advert retry %v\n", s.Retry)
	}
	if len(s.Paths) > 0 {
		fmt.Fprintf(&b, "advert paths %s\n", strings.ReplaceAll(plan9.Join(s.Paths), "\n", " "))
		fmt.Fprintf(&b, "advert port %d\n", s.Port)
	}
	return b.String()
}

// peersText is the content of peers: "ID udp!HOST!PORT" lines.
func peersText(n *dhtlib.Node) string {
	var b strings.Builder
	for _, p := range n.Peers() {
		fmt.Fprintf(&b, "%x udp!%s!%d\n", p.ID, p.Addr.Addr(), p.Addr.Port())
	}
	return b.String()
}

// recordText is a record as records/KEY and lookup show it.
func recordText(r dhtlib.Record, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "key %s\n", nodekey.Encode(r.Key))
	fmt.Fprintf(&b, "seq %d\n", r.Seq)
	fmt.Fprintf(&b, "age %s\n", r.AgeAt(now).Truncate(time.Second))
	if r.From > 0 {
		fmt.Fprintf(&b, "from %d\n", r.From)
	}
	if r.Stored > 0 || r.From == 0 {
		fmt.Fprintf(&b, "stored %d\n", r.Stored)
	}
	fmt.Fprintf(&b, "value %q\n", r.Value)
	return b.String()
}

// recordFile is the file records/KEY.
func recordFile(n *dhtlib.Node, k string) synth.Node {
	return synth.Snapshot(k, 0444, func(context.Context) ([]byte, error) {
		r, ok := n.Record(k)
		if !ok {
			return nil, plan9.ErrNotFound
		}
		return []byte(recordText(r, n.Now())), nil
	})
}

// ctlCmds are the ctl file's commands.
func ctlCmds(n *dhtlib.Node) []synth.Cmd {
	return []synth.Cmd{
		{Name: "lookup", Min: 1, Max: 1, Usage: "lookup KEY", Answer: answer(n, "lookup")},
		{Name: "find", Min: 1, Max: 1, Usage: "find PATH", Answer: answer(n, "find")},
		{Name: "announce", Min: 1, Max: 2, Usage: "announce PATH [PORT]", Answer: answer(n, "announce")},
		{Name: "republish", Usage: "republish", Answer: answer(n, "republish")},
	}
}

// ctlHelp is what a ctl file reads before any command.
const ctlHelp = "lookup KEY\nfind PATH\nannounce PATH [PORT]\nrepublish\n"

// ctlAnswer answers the commands written to ctl, each write within
// cmdTimeout.
func ctlAnswer(n *dhtlib.Node) func(ctx context.Context, req []byte) ([]byte, error) {
	answer := synth.CtlAnswer(ctlCmds(n), ctlHelp)
	return func(ctx context.Context, req []byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		return answer(ctx, req)
	}
}

// answer is the Answer of the command verb: run's, its error named by
// the verb alone ("lookup: KEY: no record found", not "dht: lookup KEY:
// ...").
func answer(n *dhtlib.Node, verb string) func(ctx context.Context, args []string) ([]byte, error) {
	return func(ctx context.Context, args []string) ([]byte, error) {
		ans, err := run(ctx, n, verb, args)
		if err != nil {
			return nil, &cmdError{verb: verb, err: err}
		}
		return ans, nil
	}
}

// cmdError is a failed command: "verb: error", without the library's
// "dht: " and the verb it names already.
type cmdError struct {
	verb string
	err  error
}

func (e *cmdError) Error() string {
	msg := strings.TrimPrefix(e.err.Error(), "dht: ")
	if m, ok := strings.CutPrefix(msg, e.verb+": "); ok {
		msg = m
	} else if m, ok := strings.CutPrefix(msg, e.verb+" "); ok {
		msg = m
	}
	return e.verb + ": " + msg
}

func (e *cmdError) Unwrap() error { return e.err }

// run carries out one ctl command and returns its answer.
func run(ctx context.Context, n *dhtlib.Node, verb string, args []string) ([]byte, error) {
	switch verb {
	case "lookup":
		pub, err := nodekey.Decode(args[0])
		if err != nil {
			return nil, err
		}
		r, err := n.Lookup(ctx, pub)
		if err != nil {
			return nil, err
		}
		return []byte(recordText(r, n.Now())), nil
	case "find":
		peers, err := n.Find(ctx, args[0])
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, p := range peers {
			fmt.Fprintf(&b, "tcp!%s!%d\n", p.Addr(), p.Port())
		}
		return []byte(b.String()), nil
	case "announce":
		port := 0
		if len(args) == 2 {
			p, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil || p == 0 {
				return nil, fmt.Errorf("dht: bad port %q", args[1])
			}
			port = int(p)
		}
		k, err := n.Announce(ctx, args[0], port)
		if err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, "announced %s to %d nodes\n", args[0], k), nil
	case "republish":
		k, err := n.Republish(ctx)
		if err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, "republished to %d nodes\n", k), nil
	}
	return nil, plan9.ErrBadCtl
}

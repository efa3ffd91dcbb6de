package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	dhtlib "cheshire/dht"
	"cheshire/importers/remote"
	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/providers/ledger"
	"cheshire/providers/locks"
	"cheshire/raftgroup"
)

// cluster is the node's raft group and the two providers on it.
type cluster struct {
	group  *raftgroup.Group
	ledger *ledger.Ledger
	locks  *locks.Locks
}

// openCluster starts the raft group in DIR/ledger, its listener on
// listen (HOST:PORT; port 0: the one bound last time, else any), with
// the ledger's and the locks' state machines.
func openCluster(dir, listen, owner string, id *nodekey.Identity, log *slog.Logger, dhtNode func() *dhtlib.Node) (*cluster, error) {
	lst, kst := ledger.NewState(), locks.NewState()
	g, err := raftgroup.Open(raftgroup.Options{Dir: filepath.Join(dir, "ledger"), ID: id, Listen: listen,
		Parts: map[string]raftgroup.Part{ledger.Part: lst, locks.Part: kst}, Log: log.With("part", "raft")})
	if err != nil {
		return nil, err
	}
	return &cluster{group: g,
		ledger: ledger.New(ledger.Options{Group: g, State: lst, Key: id.Private, Owner: owner, Log: log.With("module", "ledger"),
			Resolve: raftResolver(dhtNode)}),
		locks: locks.New(locks.Options{Group: g, State: kst, ID: id.ID(), Owner: owner, Log: log.With("module", "locks")}),
	}, nil
}

// raftResolver finds a node's raft address, KEY@HOST:PORT, from the raft
// line of its DHT record.
func raftResolver(node func() *dhtlib.Node) func(ctx context.Context, key string) (string, error) {
	return func(ctx context.Context, key string) (string, error) {
		pk, err := nodekey.Decode(key)
		if err != nil {
			return "", err
		}
		n := node()
		if n == nil {
			return "", fmt.Errorf("dht: %w", plan9.ErrModuleStopped)
		}
		r, err := n.Lookup(ctx, pk)
		if err != nil {
			return "", err
		}
		rec, err := remote.ParseRecord(r.Value)
		if err != nil {
			return "", fmt.Errorf("dht record of %s: %w", key, err)
		}
		d, err := plan9.ParseDial(rec.Raft)
		if rec.Raft == "" || err != nil {
			return "", fmt.Errorf("no raft address in the dht record of %s", key)
		}
		return key + "@" + net.JoinHostPort(d.Host, d.Port), nil
	}
}

// endpointResolver finds a key's 9P addresses in the ledger's endpoint
// registry, signed by the key itself, when the node is in a cluster and
// the key registered some; else through next (the DHT).
func endpointResolver(st *ledger.State, next func(context.Context, ed25519.PublicKey) ([]string, error)) func(context.Context, ed25519.PublicKey) ([]string, error) {
	return func(ctx context.Context, key ed25519.PublicKey) ([]string, error) {
		if addrs, _, ok := st.Endpoint(nodekey.Encode(key)); ok {
			var tls []string
			for _, a := range addrs {
				if strings.HasPrefix(a, "tls!") {
					tls = append(tls, a)
				}
			}
			if len(tls) > 0 {
				return tls, nil
			}
		}
		return next(ctx, key)
	}
}

// raftAdvert is the raft listener as a dial string for the DHT record.
func (c *cluster) raftAdvert() string {
	_, hp, _ := strings.Cut(c.group.Addr(), "@")
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return ""
	}
	return "tls!" + host + "!" + port
}

func (c *cluster) modules() []module.Module {
	return []module.Module{
		module.Native(module.Manifest{Name: "ledger", Version: version, Mount: "/ledger",
			Description: "a replicated, signed ledger on the node's raft group: accounts, transfers, contracts, endpoints, blocks"}, c.ledger),
		module.Native(module.Manifest{Name: "locks", Version: version, Mount: "/locks",
			Description: "cluster-wide locks with leases and fencing tokens, in the node's raft group"}, c.locks),
	}
}

func (c *cluster) close() {
	c.locks.Close()
	c.ledger.Close()
	c.group.Close()
}

const ledgerUsage = `usage: cheshire ledger sign [LINE]      sign transactions of this node's key (stdin: one a line)
       cheshire ledger verify DIR_OR_PATH  check a chain of blocks offline

sign reads DIR/identity.pem (DIR is $CHESHIRE_DIR, else ~/.cheshire).
verify takes a directory of blocks named 0, 1, ... (a copy of
/ledger/blocks) or one file of blocks one after the other, checks every
block's number, previous hash, the sealer's signature and every
transaction's signature, and prints the head: N HASH.
`

func ledgerCmd(args []string) error {
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, ledgerUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "sign":
		return ledgerSign(fs.Args()[1:])
	case "verify":
		if fs.NArg() != 2 {
			fs.Usage()
			return errors.New("want verify DIR_OR_PATH")
		}
		head, err := verifyBlocks(fs.Arg(1))
		if err != nil {
			return err
		}
		fmt.Println(head)
		return nil
	}
	fs.Usage()
	return errors.New("want sign or verify")
}

func ledgerSign(args []string) error {
	id, err := nodekey.Load(dataDir())
	if err != nil {
		return err
	}
	lines := []string{strings.Join(args, " ")}
	if len(args) == 0 {
		lines = nil
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != "" {
				lines = append(lines, sc.Text())
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	for _, l := range lines {
		s, err := ledger.Sign(l, id.Private)
		if err != nil {
			return err
		}
		fmt.Println(s)
	}
	return nil
}

// verifyBlocks reads and checks a chain and returns "N HASH" of its head.
func verifyBlocks(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	var texts []string
	if fi.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return "", err
		}
		var nums []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 {
				nums = append(nums, n)
			}
		}
		sort.Ints(nums)
		for _, n := range nums {
			b, err := os.ReadFile(filepath.Join(path, strconv.Itoa(n)))
			if err != nil {
				return "", err
			}
			texts = append(texts, string(b))
		}
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		for _, part := range strings.SplitAfter(string(b), "\nblock ") {
			texts = append(texts, part)
		}
		for i := range texts {
			texts[i] = strings.TrimSuffix(texts[i], "block ")
			if i > 0 {
				texts[i] = "block " + texts[i]
			}
		}
	}
	if len(texts) == 0 {
		return "", errors.New("no blocks")
	}
	var blocks []*ledger.Block
	for i, t := range texts {
		b, err := ledger.ParseBlock(t)
		if err != nil {
			return "", fmt.Errorf("block %d: %w", i, err)
		}
		blocks = append(blocks, b)
	}
	head, err := ledger.VerifyChain(blocks)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s", len(blocks)-1, head), nil
}

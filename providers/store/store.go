// Package store serves /store: files kept across nodes, encrypted and
// erasure coded. Each file is encrypted with its own key, cut into
// stripes, and each stripe Reed-Solomon coded into k data and m parity
// pieces; the pieces of fragment i of every stripe make one file at one
// holder, a node chosen by XOR distance from the file's id. A signed
// fragment list names the fragments and the hash of every piece. Caps
// (write, read, verify) carry the keys, as in Tahoe-LAFS.
//
// The tree (see README.md):
//
//	/store/ctl             policy, repair, verify, holders, import-cap
//	/store/health          per file: fragments placed, reachable, acks, state
//	/store/status          bytes held for others and by others; holders
//	/store/fragments/      this node's fragments, for trusted peers only; any
//	                       node reaches them by key (HolderAttach) while the
//	                       node offers space, each key apart and within quota
//	/store/DIR/            directories, each with a ctl
//	/store/FILE            content: writes are coded as they arrive; the
//	                       clunk returns once happy holders have synced
//	/store/FILE.caps       the file's caps, one a line
package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"
	"cheshire/nodekey"
	"cheshire/styx"
	"cheshire/synth"
)

// Defaults of Options and of a policy.
const (
	DefaultShard       = 256 << 10
	DefaultK           = 3
	DefaultM           = 2
	DefaultRepairEvery = time.Minute
	DefaultRepairRate  = 16 << 20 // bytes a second
	// DefaultDiscoverEvery is how often the DHT is asked for holders.
	DefaultDiscoverEvery = time.Minute
	// ackTimeout bounds the wait for one holder's answer to a commit.
	ackTimeout = 60 * time.Second
	// hedge is how long a piece may take before the read asks another
	// fragment for it.
	hedge = time.Second
)

// Options configure a Store.
type Options struct {
	// Dir is the node's data directory; the store keeps DIR/store and
	// reads DIR/users (NAME KEY lines): those keys are holders, and those
	// users (with Owner) may use /store/fragments.
	Dir   string
	Owner string
	// Self is this node's key (z-base-32), the holder its own disk is.
	Self string
	// Dial returns the root of the fragments (HolderAttach) of the node
	// holding key, at addr if not "" (where the node was found), on the
	// connection shared by every import of key (nil: this node holds
	// every fragment itself).
	Dial func(ctx context.Context, key, addr string) (styx.File, error)
	// Find, if set, returns the addresses (tls!HOST!PORT) of the nodes
	// that announce they offer space (HoldersPath in the DHT), and Probe
	// the key the node at an address proves: how holders are
	// discovered. Advertise, if set, is called when the offer changes
	// (the node's DHT advert then announces HoldersPath, or stops).
	Find      func(ctx context.Context) ([]string, error)
	Probe     func(ctx context.Context, addr string) (string, error)
	Advertise func()
	// DiscoverEvery is how often holders are looked up (0:
	// DefaultDiscoverEvery).
	DiscoverEvery time.Duration
	Log           *slog.Logger
	// Contracts, if set, returns the holders this node has an active
	// storage contract with (the ledger's), which are candidates too,
	// and those whose contracts have all ended, which are no longer
	// candidates for new fragments even if listed otherwise.
	Contracts func() (active, ended map[string]bool)
	// Shard is the bytes of one piece (a multiple of 16; DefaultShard).
	Shard int
	// RepairEvery is how often the background repairer looks at every
	// file (0: DefaultRepairEvery; negative: never); RepairRate bounds
	// the bytes a second it rebuilds (0: DefaultRepairRate).
	RepairEvery time.Duration
	RepairRate  int
}

// A policy is how a directory's files are coded: K data fragments, M
// parity, and the acks a write waits for.
type policy struct{ K, M, Happy int }

func (p policy) String() string { return fmt.Sprintf("k=%d m=%d happy=%d", p.K, p.M, p.Happy) }

// An entry is one file of the tree.
type entry struct {
	cap     Cap
	size    int64
	acks    int  // fragments acknowledged on stable storage at the last write
	holders int  // distinct holders among them
	pending bool // created, not yet committed
	busy    bool // a write is open
	version uint32
	k, m    int // the code of the version
}

// Store is the /store file server.
type Store struct {
	opts  Options
	log   *slog.Logger
	disk  *disk
	local localHolder
	srv   *synth.Server
	ctx   context.Context
	stop  context.CancelFunc
	held  *synth.Server // the fragments, for nodes by key (HolderAttach)
	wg    sync.WaitGroup
	wake  chan struct{} // a discovery round is wanted

	saveMu sync.Mutex // serialises saves of the state file

	rootsMu sync.Mutex
	roots   map[string]styx.File // guarded by rootsMu: /store/fragments of each holder

	mu       sync.Mutex
	files    map[string]*entry     // guarded by mu: by path ("/a/b")
	dirs     map[string]*policy    // guarded by mu: every directory; a nil policy inherits
	holders  []string              // guarded by mu: keys added by ctl
	bad      map[string]int        // guarded by mu: corrupt pieces seen, by holder
	nodes    map[string]synth.Node // guarded by mu: the tree's nodes, by path
	lastFail map[string]string     // guarded by mu: the last failure of each holder
	badFrags map[string]string     // guarded by mu: fragment name → holder that gave a corrupt piece
	offer    quota                 // guarded by mu: space offered to untrusted nodes; Total 0: none
	discover bool                  // guarded by mu: holders are looked up in the DHT
	discoSet bool                  // guarded by mu: discover was set by ctl (and is saved)
	found    map[string]*found     // guarded by mu: holders discovered, by key
	probed   map[string]probe      // guarded by mu: the key at each address found
}

// A found holder is one discovered in the DHT.
type found struct {
	addr string
	seen time.Time // the last round that found it
}

// A probe is what dialing an address found said.
type probe struct {
	key string
	err string
	at  time.Time
}

// New opens the store of opts.Dir.
func New(opts Options) (*Store, error) {
	if opts.Shard == 0 {
		opts.Shard = DefaultShard
	}
	if opts.Shard < 16 || opts.Shard%16 != 0 || opts.Shard > maxShard {
		return nil, fmt.Errorf("store: bad piece size %d: want a multiple of 16", opts.Shard)
	}
	if opts.RepairEvery == 0 {
		opts.RepairEvery = DefaultRepairEvery
	}
	if opts.RepairRate <= 0 {
		opts.RepairRate = DefaultRepairRate
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.DiscoverEvery <= 0 {
		opts.DiscoverEvery = DefaultDiscoverEvery
	}
	d, err := newDisk(filepath.Join(opts.Dir, "store", "fragments"), opts.Self)
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, log: log, disk: d, local: localHolder{key: opts.Self, d: d},
		files: make(map[string]*entry), dirs: map[string]*policy{"/": nil}, bad: make(map[string]int),
		nodes: make(map[string]synth.Node), lastFail: make(map[string]string), badFrags: make(map[string]string), roots: make(map[string]styx.File),
		discover: opts.Find != nil, found: make(map[string]*found), probed: make(map[string]probe), wake: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		return nil, err
	}
	d.trusted = s.trusted
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.srv = synth.NewServer(s.root(), synth.WithOwner(opts.Owner))
	s.held = synth.NewServer(s.fragmentsDir(s.keyPrincipal), synth.WithOwner("none"))
	return s, nil
}

// Attach implements styx.Attacher.
func (s *Store) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return s.srv.Attach(ctx, uname, aname, auth)
}

// HolderAttach attaches the node of key (proven by its connection) to
// this node's fragments: a trusted node (DIR/users, `holders add`, a
// storage contract) uses them as it does /store/fragments; another,
// while this node offers space, its own fragments within the offer.
func (s *Store) HolderAttach(ctx context.Context, key string) (styx.File, error) {
	if _, err := nodekey.Decode(key); err != nil {
		return nil, fmt.Errorf("store: bad key: %w", err)
	}
	return s.held.Attach(ctx, key, "", nil)
}

// Start starts the background repairer and the discovery of holders;
// Close stops them.
func (s *Store) Start() {
	if s.opts.Find != nil && s.opts.Probe != nil {
		s.wg.Add(1)
		go s.discoverer()
	}
	if s.opts.RepairEvery < 0 {
		return
	}
	s.wg.Add(1)
	go s.repairer()
}

// Close stops the background work and drops the connections to holders.
func (s *Store) Close() {
	s.stop()
	s.wg.Wait()
	s.rootsMu.Lock()
	defer s.rootsMu.Unlock()
	for k, r := range s.roots {
		r.Clunk()
		delete(s.roots, k)
	}
}

// statePath is the file that keeps the tree: directories and their
// policies, files and their caps, holders added by ctl.
func (s *Store) statePath() string { return filepath.Join(s.opts.Dir, "store", "state") }

// load reads the state file.
func (s *Store) load() error {
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: state: %w", err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := fmt.Errorf("store: state line %d: bad %s", i+1, f[0])
		switch {
		case f[0] == "dir" && len(f) == 2:
			s.dirs[f[1]] = nil
		case f[0] == "policy" && len(f) == 5:
			var p policy
			var err1, err2, err3 error
			p.K, err1 = strconv.Atoi(f[2])
			p.M, err2 = strconv.Atoi(f[3])
			p.Happy, err3 = strconv.Atoi(f[4])
			if errors.Join(err1, err2, err3) != nil || checkPolicy(p) != nil {
				return bad
			}
			s.dirs[f[1]] = &p
		case f[0] == "file" && len(f) == 8:
			c, err := ParseCap(f[2])
			if err != nil {
				return fmt.Errorf("store: state line %d: %w", i+1, err)
			}
			e := &entry{cap: c}
			var err1, err2, err3, err4, err5 error
			e.size, err1 = strconv.ParseInt(f[3], 10, 64)
			e.acks, err2 = strconv.Atoi(f[4])
			e.holders, err3 = strconv.Atoi(f[5])
			e.k, err4 = strconv.Atoi(f[6])
			e.m, err5 = strconv.Atoi(f[7])
			if errors.Join(err1, err2, err3, err4, err5) != nil {
				return bad
			}
			s.files[f[1]] = e
		case f[0] == "holder" && len(f) == 2:
			s.holders = append(s.holders, f[1])
		case f[0] == "offer" && len(f) == 3:
			var err1, err2 error
			s.offer.Total, err1 = strconv.ParseInt(f[1], 10, 64)
			s.offer.PerKey, err2 = strconv.ParseInt(f[2], 10, 64)
			if errors.Join(err1, err2) != nil || s.offer.Total < 0 || s.offer.PerKey < 0 {
				return bad
			}
		case f[0] == "discover" && len(f) == 2 && (f[1] == "on" || f[1] == "off"):
			s.discover, s.discoSet = f[1] == "on", true
		default:
			return bad
		}
	}
	return nil
}

// save writes the state file, atomically and synced.
func (s *Store) save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	var b bytes.Buffer
	s.mu.Lock()
	for _, d := range slices.Sorted(maps.Keys(s.dirs)) {
		if p := s.dirs[d]; p != nil {
			fmt.Fprintf(&b, "policy %s %d %d %d\n", d, p.K, p.M, p.Happy)
		} else {
			fmt.Fprintf(&b, "dir %s\n", d)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s.files)) {
		e := s.files[p]
		if !e.pending {
			fmt.Fprintf(&b, "file %s %s %d %d %d %d %d\n", p, e.cap, e.size, e.acks, e.holders, e.k, e.m)
		}
	}
	for _, h := range s.holders {
		fmt.Fprintf(&b, "holder %s\n", h)
	}
	if s.offer.Total > 0 {
		fmt.Fprintf(&b, "offer %d %d\n", s.offer.Total, s.offer.PerKey)
	}
	if s.discoSet {
		fmt.Fprintf(&b, "discover %s\n", onOff(s.discover))
	}
	s.mu.Unlock()
	if err := atomicfile.Write(s.statePath(), b.Bytes(), 0600); err != nil {
		return fmt.Errorf("store: state: %w", err)
	}
	return nil
}

// policyOf is the policy of directory dir: its own or its nearest
// ancestor's. s.mu is held.
func (s *Store) policyOfLocked(dir string) policy {
	for {
		if p := s.dirs[dir]; p != nil {
			return *p
		}
		if dir == "/" {
			return policy{K: DefaultK, M: DefaultM, Happy: DefaultK + DefaultM}
		}
		dir = path.Dir(dir)
	}
}

func checkPolicy(p policy) error {
	switch {
	case p.K < 1 || p.M < 0 || p.K+p.M > maxShards:
		return fmt.Errorf("store: bad policy %s: want 1 <= k, 0 <= m, k+m <= %d", p, maxShards)
	case p.Happy < p.K || p.Happy > p.K+p.M:
		return fmt.Errorf("store: bad policy %s: want k <= happy <= k+m", p)
	}
	return nil
}

// users are the keys of DIR/users, by user name.
func (s *Store) users() map[string]string {
	data, err := os.ReadFile(filepath.Join(s.opts.Dir, "users"))
	if err != nil {
		return nil
	}
	m := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			m[f[0]] = f[1]
		}
	}
	return m
}

// trusted tells whether the node of key uses this node's fragments
// without a quota, and every key's: a key of DIR/users, added by
// `holders add`, or with an active storage contract.
func (s *Store) trusted(key string) bool {
	s.mu.Lock()
	added := slices.Contains(s.holders, key)
	s.mu.Unlock()
	if added {
		return true
	}
	for _, k := range s.users() {
		if k == key {
			return true
		}
	}
	if s.opts.Contracts != nil {
		active, _ := s.opts.Contracts()
		return active[key]
	}
	return false
}

// holderKeys are the known holders: this node, the keys added by ctl,
// those of DIR/users, those with an active storage contract, and those
// discovered in the DHT.
func (s *Store) holderKeys() []string {
	keys := []string{s.opts.Self}
	s.mu.Lock()
	keys = append(keys, s.holders...)
	if s.discover {
		for k, f := range s.found {
			if s.probed[f.addr].err == "" { // not while its address does not answer
				keys = append(keys, k)
			}
		}
	}
	s.mu.Unlock()
	for _, k := range s.users() {
		keys = append(keys, k)
	}
	if s.opts.Contracts != nil {
		active, _ := s.opts.Contracts()
		for k := range active {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// placementKeys are the holders new fragments may go to (a write, a
// repair): the known holders less those whose storage contracts with
// this node have all ended.
func (s *Store) placementKeys() []string {
	keys := s.holderKeys()
	if s.opts.Contracts == nil {
		return keys
	}
	_, ended := s.opts.Contracts()
	return slices.DeleteFunc(keys, func(k string) bool { return ended[k] && k != s.opts.Self })
}

// holder returns the holder of key.
func (s *Store) holder(key string) holder {
	if key == s.opts.Self || s.opts.Dial == nil {
		return s.local
	}
	return remoteHolder{key: key, root: func(ctx context.Context) (styx.File, error) { return s.rootOf(ctx, key) }}
}

// rootOf returns the root of /store/fragments at the node of key, dialled
// once and kept: a root holds its connection open (and remade after a
// loss) until clunked, which Close does.
func (s *Store) rootOf(ctx context.Context, key string) (styx.File, error) {
	s.rootsMu.Lock()
	r := s.roots[key]
	s.rootsMu.Unlock()
	if r != nil {
		return r, nil
	}
	s.mu.Lock()
	var addr string
	if f := s.found[key]; f != nil {
		addr = f.addr
	}
	s.mu.Unlock()
	r, err := s.opts.Dial(ctx, key, addr)
	if err != nil {
		return nil, fmt.Errorf("store: holder %s: %w", short(key), err)
	}
	s.rootsMu.Lock()
	defer s.rootsMu.Unlock()
	if s.ctx.Err() != nil {
		r.Clunk()
		return nil, fmt.Errorf("store: closed")
	}
	if old := s.roots[key]; old != nil {
		r.Clunk()
		return old, nil
	}
	s.roots[key] = r
	return r, nil
}

// byDistance orders keys by XOR distance of their hash from id.
func byDistance(keys []string, id [32]byte) []string {
	type kd struct {
		key string
		d   [32]byte
	}
	ds := make([]kd, 0, len(keys))
	for _, k := range keys {
		h := sha256.Sum256([]byte(k))
		if pk, err := nodekey.Decode(k); err == nil {
			h = sha256.Sum256(pk)
		}
		for i := range h {
			h[i] ^= id[i]
		}
		ds = append(ds, kd{k, h})
	}
	sort.Slice(ds, func(i, j int) bool { return bytes.Compare(ds[i].d[:], ds[j].d[:]) < 0 })
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.key
	}
	return out
}

// noteFail remembers why a holder failed, for status.
func (s *Store) noteFail(key string, err error) {
	s.mu.Lock()
	s.lastFail[key] = err.Error()
	s.mu.Unlock()
}

// noteOK forgets a holder's last failure: it just stored a fragment.
func (s *Store) noteOK(key string) {
	s.mu.Lock()
	delete(s.lastFail, key)
	s.mu.Unlock()
}

func (s *Store) noteBad(key, frag string) {
	s.mu.Lock()
	s.bad[key]++
	if frag != "" {
		s.badFrags[frag] = key
	}
	s.mu.Unlock()
	s.log.Warn("store: holder returned a corrupt piece", "holder", key)
}

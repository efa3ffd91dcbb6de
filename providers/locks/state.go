package locks

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/raftgroup"
)

// State is the locks' replicated state machine (a raftgroup.Part).
// Commands are text:
//
//	acquire NAME HOLDER OWNER LEASE   grant NAME to OWNER (a handle on node HOLDER) for LEASE ns
//	renew HOLDER OWNER...             extend the unexpired leases of these handles of node HOLDER
//	release NAME OWNER                free NAME if OWNER holds it
//
// Time is the proposer's clock carried in the entry, so every replica
// decides expiry alike. Tokens increase with every grant and never
// repeat: the fencing token.
type State struct {
	mu      sync.RWMutex
	s       state         // guarded by mu
	changed chan struct{} // guarded by mu: closed and replaced at each change
}

type state struct {
	Locks map[string]*Lock
	Next  uint64 // the last token granted
}

// Lock is a granted lock.
type Lock struct {
	Name    string
	Holder  string // the node's key
	Owner   string // the handle on that node
	Token   uint64
	Expires time.Time
	Lease   time.Duration
}

var _ raftgroup.Part = (*State)(nil)

// NewState returns a state without locks.
func NewState() *State {
	return &State{s: state{Locks: map[string]*Lock{}}, changed: make(chan struct{})}
}

// Apply implements raftgroup.Part.
func (st *State) Apply(index uint64, now time.Time, cmd []byte) raftgroup.Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	w := strings.Fields(string(cmd))
	if len(w) == 0 {
		return raftgroup.Result{Err: "empty locks command"}
	}
	var r raftgroup.Result
	switch {
	case w[0] == "acquire" && len(w) == 5:
		lease, err := strconv.ParseInt(w[4], 10, 64)
		if err != nil || lease <= 0 {
			return raftgroup.Result{Err: "bad lease"}
		}
		if l, ok := st.s.Locks[w[1]]; ok && now.Before(l.Expires) && l.Owner != w[3] {
			return raftgroup.Result{Err: "lock held by " + l.Holder}
		}
		st.s.Next++
		l := &Lock{Name: w[1], Holder: w[2], Owner: w[3], Token: st.s.Next, Lease: time.Duration(lease), Expires: now.Add(time.Duration(lease))}
		st.s.Locks[w[1]] = l
		r.Answer = fmt.Sprintf("%d %d", l.Token, l.Expires.UnixNano())
	case w[0] == "renew" && len(w) >= 2:
		n := 0
		owners := map[string]bool{}
		for _, o := range w[2:] {
			owners[o] = true
		}
		for _, l := range st.s.Locks {
			if l.Holder == w[1] && owners[l.Owner] && now.Before(l.Expires) {
				l.Expires = now.Add(l.Lease)
				n++
			}
		}
		r.Answer = strconv.Itoa(n)
	case w[0] == "release" && len(w) == 3:
		if l, ok := st.s.Locks[w[1]]; ok && l.Owner == w[2] {
			delete(st.s.Locks, w[1])
		}
	default:
		return raftgroup.Result{Err: fmt.Sprintf("bad locks command %q", w[0])}
	}
	close(st.changed)
	st.changed = make(chan struct{})
	return r
}

// Snapshot implements raftgroup.Part.
func (st *State) Snapshot() ([]byte, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return json.Marshal(&st.s)
}

// Restore implements raftgroup.Part.
func (st *State) Restore(data []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s = state{Locks: map[string]*Lock{}}
	if data != nil {
		if err := json.Unmarshal(data, &st.s); err != nil {
			return err
		}
	}
	close(st.changed)
	st.changed = make(chan struct{})
	return nil
}

// get returns a copy of a lock and a channel closed at the next change.
func (st *State) get(name string) (Lock, bool, <-chan struct{}) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	l, ok := st.s.Locks[name]
	if !ok {
		return Lock{}, false, st.changed
	}
	return *l, true, st.changed
}

// names lists the locks granted (expired ones included until taken again).
func (st *State) names() []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := make([]string, 0, len(st.s.Locks))
	for n := range st.s.Locks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

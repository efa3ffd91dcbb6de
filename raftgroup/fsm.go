package raftgroup

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A Part is one state machine of the group (the ledger, the locks).
// Apply, Snapshot and Restore are called one at a time, from raft's
// FSM goroutine; a Part guards its state for its own readers.
type Part interface {
	// Apply applies cmd, committed at the log index, proposed at now
	// (the proposing node's clock, carried in the entry, so that every
	// replica sees the same time). It must be deterministic: same state,
	// same entry, same result, on every node.
	Apply(index uint64, now time.Time, cmd []byte) Result
	// Snapshot returns the whole state.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's.
	Restore(data []byte) error
}

// Result is the outcome of an applied command: an answer, or the reason
// it was refused (an error text; the state is unchanged).
type Result struct {
	Index  uint64 `json:"i,omitempty"`
	Answer string `json:"a,omitempty"`
	Err    string `json:"e,omitempty"`
}

// encodeEntry makes a log entry: the part's name, a NUL, the proposer's
// time in Unix nanoseconds (8 bytes), and the command.
func encodeEntry(part string, now time.Time, cmd []byte) []byte {
	b := make([]byte, 0, len(part)+9+len(cmd))
	b = append(b, part...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(now.UnixNano()))
	return append(b, cmd...)
}

func decodeEntry(b []byte) (part string, now time.Time, cmd []byte, err error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 || len(b) < i+9 {
		return "", time.Time{}, nil, fmt.Errorf("bad log entry")
	}
	ns := int64(binary.BigEndian.Uint64(b[i+1:]))
	return string(b[:i]), time.Unix(0, ns), b[i+9:], nil
}

// fsm dispatches entries to the parts by name.
type fsm struct {
	parts map[string]Part

	mu      sync.Mutex
	applied uint64        // guarded by mu: the last index applied
	changed chan struct{} // guarded by mu: closed and replaced at each apply
}

func newFSM(parts map[string]Part) *fsm {
	return &fsm{parts: parts, changed: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	r := f.apply(l)
	f.mu.Lock()
	f.applied = l.Index
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return r
}

func (f *fsm) apply(l *raft.Log) Result {
	if l.Type != raft.LogCommand {
		return Result{Index: l.Index}
	}
	name, now, cmd, err := decodeEntry(l.Data)
	if err != nil {
		return Result{Index: l.Index, Err: err.Error()}
	}
	p, ok := f.parts[name]
	if !ok {
		return Result{Index: l.Index, Err: fmt.Sprintf("unknown state machine %q", name)}
	}
	r := p.Apply(l.Index, now, cmd)
	r.Index = l.Index
	return r
}

// wait returns a channel closed at the next apply, and the index applied.
func (f *fsm) wait() (<-chan struct{}, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed, f.applied
}

// Snapshot implements raft.FSM: every part's state, taken now.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s := snapshot{}
	names := make([]string, 0, len(f.parts))
	for n := range f.parts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := f.parts[n].Snapshot()
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", n, err)
		}
		s[n] = data
	}
	return s, nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s snapshot
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("bad snapshot: %w", err)
	}
	for n, p := range f.parts {
		if err := p.Restore(s[n]); err != nil {
			return fmt.Errorf("restore of %s: %w", n, err)
		}
	}
	return nil
}

// snapshot is the parts' states by name.
type snapshot map[string][]byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}

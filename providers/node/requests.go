// The approvals queue, /node/requests: what keys and users ask of the
// node's owner, each with the ctl line that approving it writes.
//
// Lock order: Requests.mu only; nothing is called with it held but the
// save to disk.

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"
	"cheshire/plan9"
	"cheshire/synth"
)

// Queue limits.
const (
	// MaxRequests bounds the requests kept, pending and decided; when
	// it is reached the oldest decided one makes room, and with all of
	// them pending a new request is refused.
	MaxRequests = 256
	// maxArg bounds a request's argument (a path), so that a request's
	// line stays well within a ctl write.
	maxArg = 1024
)

// Request states.
const (
	Pending  = "pending"
	Approved = "approved"
	Refused  = "refused"
)

// A Request is one entry of the queue.
type Request struct {
	ID   int      `json:"id"`
	From string   `json:"from"` // who asked: "key:KEY" for a remote key, else a user of the node
	Kind string   `json:"kind"` // access, join, holder
	Args []string `json:"args,omitempty"`
	// File and Line are what approving the request writes: the ctl
	// line, to that ctl file of the approver's namespace.
	File  string    `json:"file"`
	Line  string    `json:"line"`
	State string    `json:"state"`
	By    string    `json:"by,omitempty"` // who decided
	Time  time.Time `json:"time"`         // when asked
}

// Text is the request as its file reads: "key value" lines.
func (r Request) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "id %d\nfrom %s\nkind %s\n", r.ID, r.From, r.Kind)
	if len(r.Args) > 0 {
		fmt.Fprintf(&b, "args %s\n", plan9.Join(r.Args))
	}
	fmt.Fprintf(&b, "file %s\nline %s\nstate %s\n", r.File, r.Line, r.State)
	if r.By != "" {
		fmt.Fprintf(&b, "by %s\n", r.By)
	}
	fmt.Fprintf(&b, "time %s\n", r.Time.UTC().Format(time.RFC3339))
	return b.String()
}

// Requests is the queue. Its methods may be called concurrently.
type Requests struct {
	path  string // the file it is kept in
	owner string // who decides
	now   func() time.Time

	dir *synth.Dir    // requests/: ctl, decide and a file a request, added and removed with them
	ask *synth.Server // a root with only ctl: what a remote key attaching to ask gets

	mu   sync.Mutex
	next int       // guarded by mu: the next id
	list []Request // guarded by mu: in id order
}

// OpenRequests opens the queue kept in the file path (made at the first
// request), decided by owner.
func OpenRequests(path, owner string) (*Requests, error) {
	q := &Requests{path: path, owner: owner, now: time.Now, next: 1}
	q.dir = synth.NewDir("requests", 0555)
	q.dir.Add(synth.Ctl("ctl", 0666, q.cmds(), q.status))
	q.dir.Add(synth.Ctl("decide", 0600, q.decideCmds(), nil))
	ask := synth.NewDir("/", 0555)
	ask.Add(synth.Ctl("ctl", 0222, q.cmds(), nil))
	q.ask = synth.NewServer(ask, synth.WithOwner(owner))
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return q, nil
	case err != nil:
		return nil, fmt.Errorf("requests: %w", err)
	}
	var saved struct {
		Next int       `json:"next"`
		List []Request `json:"requests"`
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("requests: bad file %s: %w", path, err)
	}
	q.list = saved.List
	q.next = max(saved.Next, 1)
	for _, r := range q.list {
		q.next = max(q.next, r.ID+1)
		q.dir.Add(q.file(r.ID))
	}
	return q, nil
}

// saveLocked writes the queue to its file, atomically.
func (q *Requests) saveLocked() error {
	b, err := json.MarshalIndent(map[string]any{"next": q.next, "requests": q.list}, "", "\t")
	if err != nil {
		return fmt.Errorf("requests: %w", err)
	}
	if err := atomicfile.Write(q.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("requests: %w", err)
	}
	return nil
}

// Errors of the queue.
var (
	ErrQueueFull  = errors.New("requests: no space left in the queue: every request is pending")
	ErrNoRequest  = errors.New("requests: no such request")
	ErrNotPending = errors.New("requests: request cannot be decided again: not pending")
)

// approval returns the ctl file and line that approve a request of kind
// with args from asker, or why there can be none.
func approval(from, kind string, args []string) (file, line string, err error) {
	for _, a := range args {
		if a == "" || len(a) > maxArg || strings.ContainsFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", "", fmt.Errorf("requests: bad argument %q", a)
		}
	}
	key, isKey := strings.CutPrefix(from, "key:")
	if !isKey || !validKey(key) {
		return "", "", fmt.Errorf("requests: %s cannot be asked but by a remote key", kind)
	}
	switch kind {
	case "access": // access PATH [ro|rw]
		if len(args) < 1 || len(args) > 2 || !strings.HasPrefix(args[0], "/") {
			return "", "", errors.New("requests: bad access request: want access PATH [ro|rw]")
		}
		mode := "ro"
		if len(args) == 2 {
			if args[1] != "ro" && args[1] != "rw" {
				return "", "", errors.New("requests: bad access request: want access PATH [ro|rw]")
			}
			mode = args[1]
		}
		return "/ns/ctl", "export " + plan9.Quote(args[0]) + " " + mode + " to " + key, nil
	case "join": // a place among the ledger's members
		if len(args) != 0 {
			return "", "", errors.New("requests: bad join request: it takes no arguments")
		}
		return "/ledger/ctl", "join " + key, nil
	case "holder": // a holder of the store's fragments
		if len(args) != 0 {
			return "", "", errors.New("requests: bad holder request: it takes no arguments")
		}
		return "/store/ctl", "holders add " + key, nil
	}
	return "", "", fmt.Errorf("requests: no such kind of request %q", kind)
}

// validKey reports whether key looks like a node key in z-base-32 (52
// letters and digits): nothing that could end or change a ctl line.
func validKey(key string) bool {
	if len(key) != 52 {
		return false
	}
	for _, c := range key {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// File files a request of kind with args from from: a remote key
// ("key:KEY", known by its TLS handshake) or a user (known by its
// attach). An asker has at most one pending request of a kind: while
// it waits, it is returned instead of a new one (and is never changed,
// so that what an approver saw is what is approved).
func (q *Requests) File(from, kind string, args []string) (Request, error) {
	file, line, err := approval(from, kind, args)
	if err != nil {
		return Request{}, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range q.list {
		if r.State == Pending && r.From == from && r.Kind == kind {
			return r, nil
		}
	}
	old := slices.Clone(q.list)
	evicted := -1
	if len(q.list) >= MaxRequests {
		i := slices.IndexFunc(q.list, func(r Request) bool { return r.State != Pending })
		if i < 0 {
			return Request{}, ErrQueueFull
		}
		evicted = q.list[i].ID
		q.list = slices.Delete(q.list, i, i+1)
	}
	r := Request{ID: q.next, From: from, Kind: kind, Args: slices.Clone(args), File: file, Line: line,
		State: Pending, Time: q.now().UTC().Truncate(time.Second)}
	q.next++
	q.list = append(q.list, r)
	if err := q.saveLocked(); err != nil {
		q.list = old
		q.next--
		return Request{}, err
	}
	if evicted >= 0 {
		q.dir.Remove(strconv.Itoa(evicted))
	}
	q.dir.Add(q.file(r.ID))
	return r, nil
}

// Decide marks the pending request id approved or refused by user, who
// must be the queue's owner. Approving only records the approval: the
// approver writes the request's line, through their own namespace,
// before.
func (q *Requests) Decide(id int, user, state string) error {
	if state != Approved && state != Refused {
		return fmt.Errorf("requests: bad state %q", state)
	}
	if user != q.owner {
		return fmt.Errorf("requests: %w: only the node's owner decides requests", plan9.ErrPerm)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.IndexFunc(q.list, func(r Request) bool { return r.ID == id })
	if i < 0 {
		return fmt.Errorf("%w %d", ErrNoRequest, id)
	}
	if q.list[i].State != Pending {
		return fmt.Errorf("%w (%s)", ErrNotPending, q.list[i].State)
	}
	old := q.list[i]
	q.list[i].State, q.list[i].By = state, user
	if err := q.saveLocked(); err != nil {
		q.list[i] = old
		return err
	}
	return nil
}

// List returns the requests, oldest first.
func (q *Requests) List() []Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.list)
}

// Get returns request id.
func (q *Requests) Get(id int) (Request, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.IndexFunc(q.list, func(r Request) bool { return r.ID == id })
	if i < 0 {
		return Request{}, false
	}
	return q.list[i], true
}

// status is the ctl file's text: counts by state.
func (q *Requests) status(context.Context) string {
	n := map[string]int{}
	for _, r := range q.List() {
		n[r.State]++
	}
	return fmt.Sprintf("pending %d\napproved %d\nrefused %d\nmax %d\n", n[Pending], n[Approved], n[Refused], MaxRequests)
}

// cmds is the ctl's command table: anyone may ask.
func (q *Requests) cmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "request", Min: 1, Max: 3, Usage: "request KIND [ARGS]", Run: func(ctx context.Context, args []string) error {
			_, err := q.File(synth.User(ctx), args[0], args[1:])
			return err
		}},
	}
}

// decideCmds is the decide file's command table: the owner decides.
func (q *Requests) decideCmds() []synth.Cmd {
	decide := func(state string) func(ctx context.Context, args []string) error {
		return func(ctx context.Context, args []string) error {
			id, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("%w %q", ErrNoRequest, args[0])
			}
			return q.Decide(id, synth.User(ctx), state)
		}
	}
	return []synth.Cmd{
		{Name: "approve", Min: 1, Max: 1, Usage: "approve ID", Run: decide(Approved)},
		{Name: "refuse", Min: 1, Max: 1, Usage: "refuse ID", Run: decide(Refused)},
	}
}

// Dir is the tree of the queue:
//
//	requests/ctl     "request KIND [ARGS]", by anyone (mode 0666); reads counts by state
//	requests/decide  "approve ID", "refuse ID", by the owner (mode 0600)
//	requests/ID      a request: id, from, kind, args, file, line, state, by, time lines
//
// That deciding is a file of its own lets an approver (the web UI) open
// it first, so that one who may not decide is refused before the
// request's line is written.
func (q *Requests) Dir() *synth.Dir { return q.dir }

// Ask is a server for those who may only ask: its root holds one file,
// ctl (write-only), taking "request KIND [ARGS]" as the attaching user.
// A node serves it to any remote key (ns.WithKeyService "#requests"),
// the key being the one its TLS handshake proved, so that a key to which
// nothing is exported can still ask to join the ledger or hold fragments.
func (q *Requests) Ask() *synth.Server { return q.ask }

// file is the file of request id: its text as it is when opened.
func (q *Requests) file(id int) synth.Node {
	return synth.String(strconv.Itoa(id), 0444, func(context.Context) string {
		r, ok := q.Get(id)
		if !ok {
			return ""
		}
		return r.Text()
	})
}

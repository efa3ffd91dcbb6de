// REPO/events: a line per changed path and per ref moved, by a push or
// through the files.

package git

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cheshire/plan9"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/merkletrie"
)

// RefUpdate is a ref moved by a push. Old is plumbing.ZeroHash for a
// ref created, New for one deleted. It has the fields of
// smarthttp.RefUpdate, so one converts to the other.
type RefUpdate struct {
	Name     plumbing.ReferenceName
	Old, New plumbing.Hash
}

// Pushed publishes on the events file of repository repo the paths
// changed and the refs moved by updates, applied by a push in that
// order. A repository that is not there is ignored.
func (r *Repos) Pushed(repo string, updates []RefUpdate) {
	rp, err := r.lookup(repo)
	if err != nil {
		return
	}
	g, err := rp.open()
	if err != nil {
		return
	}
	for _, u := range updates {
		rp.publish(g, u)
	}
}

// publish writes the events of ref update u: a line per path that
// differs between the trees of u.Old and u.New (created, updated,
// deleted), then "ref NAME OLD NEW". The lines of one update are written
// together, so those of another never come between them.
func (rp *repo) publish(g *gogit.Repository, u RefUpdate) {
	var b strings.Builder
	lines, err := pathEvents(g, u.Old, u.New)
	if err != nil {
		// The ref line is told anyway; the paths are not.
		fmt.Fprintf(&b, "error %s\n", plan9.Quote(oneLine(err.Error())))
	}
	for _, l := range lines {
		b.WriteString(l)
	}
	fmt.Fprintf(&b, "ref %s %s %s\n", u.Name, u.Old, u.New)
	rp.qmu.Lock()
	defer rp.qmu.Unlock()
	if !rp.eventMu.TryLock() { // a push is being told
		rp.eventQ = append(rp.eventQ, b.String())
		return
	}
	rp.events.Write([]byte(b.String()))
	rp.eventMu.Unlock()
}

// release writes the blocks queued while eventMu was held, and lets
// it go.
func (rp *repo) release() {
	rp.qmu.Lock()
	defer rp.qmu.Unlock()
	for _, b := range rp.eventQ {
		rp.events.Write([]byte(b))
	}
	rp.eventQ = nil
	rp.eventMu.Unlock()
}

// PushEvents tells a push on REPO/events while it happens: a line per
// changed path as soon as the tree naming it has arrived, then a line
// per ref, "ref NAME OLD NEW" if it moved or "refused NAME OLD NEW
// REASON" if not. The path lines of a push come before its ref lines
// and are settled by them: a refused push changed nothing.
//
// Lines of one push are never interleaved with another's: the first
// push of a repository is told live, holding the repository's events
// for its duration; one that starts while another is being told is
// kept and told whole when it ends, and so is a ref moved through the
// files meanwhile (which does not wait). Its methods are those of
// smarthttp.PushListener.
type PushEvents struct {
	rp   *repo // nil: the repository is not there, and nothing is told
	live bool
	buf  strings.Builder // lines kept, when not live
}

// Begin starts telling a push to repository name. Done must follow.
func (r *Repos) Begin(name string) *PushEvents {
	rp, err := r.lookup(name)
	if err != nil {
		return &PushEvents{}
	}
	return &PushEvents{rp: rp, live: rp.eventMu.TryLock()}
}

func (p *PushEvents) line(l string) {
	switch {
	case p.rp == nil:
	case p.live:
		p.rp.events.Write([]byte(l))
	case p.buf.Len() < maxKeptEvents:
		p.buf.WriteString(l)
	}
}

// maxKeptEvents bounds the lines kept of a push told after another.
const maxKeptEvents = 4 << 20

// Path tells of a changed file: verb is create, update or delete.
func (p *PushEvents) Path(verb, path string, blob plumbing.Hash) {
	l := verb + " " + plan9.Quote(path)
	if verb != "delete" {
		l += " " + blob.String()
	}
	p.line(l + "\n")
}

// Ref tells the fate of one command of the push: why is "" if the ref
// moved.
func (p *PushEvents) Ref(name plumbing.ReferenceName, old, new plumbing.Hash, why string) {
	if why == "" {
		p.line(fmt.Sprintf("ref %s %s %s\n", name, old, new))
		if p.rp != nil {
			p.rp.rs.tellRef(p.rp.name, name, old, new)
		}
		return
	}
	p.line(fmt.Sprintf("refused %s %s %s %s\n", name, old, new, plan9.Quote(oneLine(why))))
}

// tellRef tells those watching the files (/ns/watch) that a push moved
// ref name of repository repo: its file REPO/NAME was made, written or
// removed.
func (r *Repos) tellRef(repo string, name plumbing.ReferenceName, old, new plumbing.Hash) {
	f := r.changed.Load()
	if f == nil {
		return
	}
	op := "write"
	switch {
	case old.IsZero():
		op = "create"
	case new.IsZero():
		op = "remove"
	}
	(*f)(op, "/"+repo+"/"+name.String(), "")
}

// Done ends the push's lines.
func (p *PushEvents) Done() {
	switch {
	case p.rp == nil:
	case p.live:
		p.rp.release()
	default:
		p.rp.eventMu.Lock()
		p.rp.events.Write([]byte(p.buf.String()))
		p.rp.release()
	}
}

// pathEvents returns, sorted by path, a line per file (blob or symlink;
// gitlinks are left out) that differs between the trees of the commits
// old and new (zero: none): "create PATH BLOB", "update PATH BLOB" or
// "delete PATH". A PATH that rc would need quoted is quoted.
func pathEvents(g *gogit.Repository, old, new plumbing.Hash) ([]string, error) {
	from, err := commitTree(g, old)
	if err != nil {
		return nil, err
	}
	to, err := commitTree(g, new)
	if err != nil {
		return nil, err
	}
	if from == nil && to == nil {
		return nil, nil
	}
	changes, err := object.DiffTreeWithOptions(context.Background(), from, to, nil)
	if err != nil {
		return nil, fmt.Errorf("git: diff %s %s: %w", old, new, err)
	}
	type ev struct{ path, line string }
	var evs []ev
	add := func(e object.ChangeEntry, verb string) {
		if e.TreeEntry.Mode == filemode.Submodule {
			return
		}
		line := verb + " " + plan9.Quote(e.Name)
		if verb != "delete" {
			line += " " + e.TreeEntry.Hash.String()
		}
		evs = append(evs, ev{e.Name, line + "\n"})
	}
	for _, c := range changes {
		a, err := c.Action()
		if err != nil {
			return nil, fmt.Errorf("git: diff: %w", err)
		}
		switch a {
		case merkletrie.Insert:
			add(c.To, "create")
		case merkletrie.Delete:
			add(c.From, "delete")
		case merkletrie.Modify:
			switch {
			case c.From.TreeEntry.Mode == filemode.Submodule:
				add(c.To, "create")
			case c.To.TreeEntry.Mode == filemode.Submodule:
				add(c.From, "delete")
			default:
				add(c.To, "update")
			}
		}
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return strings.Compare(a.path, b.path) })
	lines := make([]string, len(evs))
	for i, e := range evs {
		lines[i] = e.line
	}
	return lines, nil
}

// commitTree returns the tree of the commit h names, through annotated
// tags, or nil if h is zero or names no commit (a tag of a blob).
func commitTree(g *gogit.Repository, h plumbing.Hash) (*object.Tree, error) {
	if h.IsZero() {
		return nil, nil
	}
	for range 16 {
		obj, err := g.Storer.EncodedObject(plumbing.AnyObject, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("git: no object %s", h)
		}
		if err != nil {
			return nil, fmt.Errorf("git: %s: %w", h, err)
		}
		switch obj.Type() {
		case plumbing.TagObject:
			t, err := object.DecodeTag(g.Storer, obj)
			if err != nil {
				return nil, fmt.Errorf("git: %s: %w", h, err)
			}
			h = t.Target
			continue
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(g.Storer, obj)
			if err != nil {
				return nil, fmt.Errorf("git: %s: %w", h, err)
			}
			t, err := c.Tree()
			if err != nil {
				return nil, fmt.Errorf("git: %s: %w", h, err)
			}
			return t, nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("git: %s: tag chain too long", h)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

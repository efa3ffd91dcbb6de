package smarthttp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// packPlan is what a fetch sends: the objects of the pack and, for a
// shallow fetch, the commits that become (or stop being) shallow.
type packPlan struct {
	filter    *filter // leaves out blobs, or nil
	store     storer.EncodedObjectStorer
	objects   []plumbing.Hash
	inPack    map[plumbing.Hash]bool
	shallow   []plumbing.Hash
	unshallow []plumbing.Hash
}

func (p *packPlan) add(h plumbing.Hash) {
	if !p.inPack[h] {
		p.inPack[h] = true
		p.objects = append(p.objects, h)
	}
}

// reachable returns the set of objects reachable from tips, not going
// past the parents of the commits in stop (the client's shallow
// commits). Tips the repository lacks are skipped.
func reachable(s storer.EncodedObjectStorer, tips []plumbing.Hash, stop map[plumbing.Hash]bool) (map[plumbing.Hash]bool, error) {
	seen := map[plumbing.Hash]bool{}
	queue := append([]plumbing.Hash(nil), tips...)
	for len(queue) > 0 {
		h := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[h] {
			continue
		}
		o, err := s.EncodedObject(plumbing.AnyObject, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch o.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(s, o)
			if err != nil {
				return nil, err
			}
			seen[h] = true
			if err := addTree(s, c.TreeHash, nil, seen, nil); err != nil {
				return nil, err
			}
			if !stop[h] {
				queue = append(queue, c.ParentHashes...)
			}
		case plumbing.TagObject:
			t, err := object.DecodeTag(s, o)
			if err != nil {
				return nil, err
			}
			seen[h] = true
			queue = append(queue, t.Target)
		case plumbing.TreeObject:
			if err := addTree(s, h, nil, seen, nil); err != nil {
				return nil, err
			}
		default:
			seen[h] = true
		}
	}
	return seen, nil
}

// addTree adds tree h and the trees and blobs under it to set, calling
// each (if not nil) for each one added, leaving out those in skip and
// those already in set. Submodule commits are not followed.
// each is told whether the object is a blob.
func addTree(s storer.EncodedObjectStorer, h plumbing.Hash, skip, set map[plumbing.Hash]bool, each func(plumbing.Hash, bool)) error {
	if skip[h] || set[h] {
		return nil
	}
	t, err := object.GetTree(s, h)
	if err != nil {
		return fmt.Errorf("git: tree %s: %w", h, err)
	}
	set[h] = true
	if each != nil {
		each(h, false)
	}
	for _, e := range t.Entries {
		switch {
		case e.Mode == filemode.Submodule:
		case e.Mode == filemode.Dir:
			if err := addTree(s, e.Hash, skip, set, each); err != nil {
				return err
			}
		case !skip[e.Hash] && !set[e.Hash]:
			set[e.Hash] = true
			if each != nil {
				each(e.Hash, true)
			}
		}
	}
	return nil
}

// planPack walks the history of wants, to depth commits if depth > 0,
// and lists the shallow boundary. If objects is set it also lists the
// objects to send: those reachable from wants and not in has. The walk
// stops at commits the client has, unless it deepens: then it goes on
// to depth, and the client's shallow commits it passes through become
// unshallow.
//
// A filter leaves out the blobs it does not pass, except those wanted
// by name.
func planPack(s storer.EncodedObjectStorer, wants []plumbing.Hash, depth int, clientShallow, has map[plumbing.Hash]bool, objects bool, f *filter) (*packPlan, error) {
	p := &packPlan{inPack: map[plumbing.Hash]bool{}, filter: f, store: s}
	if !objects && depth == 0 {
		return p, nil
	}
	type item struct {
		h plumbing.Hash
		d int
	}
	var queue []item
	for _, h := range wants {
		for range 16 { // peel tags
			o, err := s.EncodedObject(plumbing.AnyObject, h)
			if err != nil {
				return nil, fmt.Errorf("git: want %s: %w", h, err)
			}
			switch o.Type() {
			case plumbing.TagObject:
				t, err := object.DecodeTag(s, o)
				if err != nil {
					return nil, err
				}
				if objects && !has[h] {
					p.add(h)
				}
				h = t.Target
				continue
			case plumbing.CommitObject:
				queue = append(queue, item{h, 1})
			case plumbing.TreeObject:
				if objects {
					if err := addTree(s, h, has, p.inPack, p.addListed); err != nil {
						return nil, err
					}
				}
			default:
				if objects && !has[h] {
					p.add(h)
				}
			}
			break
		}
	}
	visited := map[plumbing.Hash]bool{}
	for i := 0; i < len(queue); i++ { // breadth first: a commit is first met at its least depth
		it := queue[i]
		if visited[it.h] {
			continue
		}
		visited[it.h] = true
		c, err := object.GetCommit(s, it.h)
		if err != nil {
			return nil, fmt.Errorf("git: commit %s: %w", it.h, err)
		}
		clientHas := has[it.h] || clientShallow[it.h]
		if objects && !clientHas {
			p.add(it.h)
			if err := addTree(s, c.TreeHash, has, p.inPack, p.addListed); err != nil {
				return nil, err
			}
		}
		if depth > 0 && it.d >= depth {
			if len(c.ParentHashes) > 0 {
				p.shallow = append(p.shallow, it.h)
			}
			continue
		}
		switch {
		case clientShallow[it.h] && depth > 0:
			p.unshallow = append(p.unshallow, it.h)
		case clientHas && depth == 0:
			continue // the client has its history
		}
		for _, ph := range c.ParentHashes {
			queue = append(queue, item{ph, it.d + 1})
		}
	}
	return p, nil
}

// addListed lists h, which addTree has put in inPack, as an object to send.
// It leaves out the blobs the filter does not pass.
func (p *packPlan) addListed(h plumbing.Hash, blob bool) {
	if blob && p.filter != nil && p.filter.omit(p.store, h) {
		return
	}
	p.objects = append(p.objects, h)
}

// includeTags adds the annotated tags that point at objects being sent
// and that the client lacks (the include-tag capability).
func (p *packPlan) includeTags(s storer.EncodedObjectStorer, refs []ref, has map[plumbing.Hash]bool) {
	for _, r := range refs {
		if r.peeled.IsZero() || !strings.HasPrefix(r.name, "refs/tags/") || !p.inPack[r.peeled] {
			continue
		}
		var chain []plumbing.Hash
		for h := r.hash; h != r.peeled && len(chain) < 16; {
			t, err := object.GetTag(s, h)
			if err != nil {
				break
			}
			chain = append(chain, h)
			h = t.Target
		}
		for _, h := range chain {
			if !has[h] {
				p.add(h)
			}
		}
	}
}

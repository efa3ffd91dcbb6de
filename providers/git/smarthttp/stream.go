// A push told as it streams in: the paths it changes are known as soon
// as the trees that name them arrive, long before the last blob does.

package smarthttp

import (
	"bytes"
	"io"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// A PushListener hears a push while it happens. Its methods are called
// from one goroutine at a time, in this order: Path for each changed
// file, Ref for each command, Done once.
type PushListener interface {
	// Path tells of a file (blob or symlink; gitlinks are left out)
	// that differs between a command's old and new trees: verb is
	// "create", "update" or "delete", blob the new content's hash
	// (zero for delete). It is called while the pack streams in, as
	// soon as the tree naming the file has arrived, before the push is
	// decided; the Ref calls that follow say whether it took effect.
	Path(verb, path string, blob plumbing.Hash)

	// Ref tells, once the pack is stored and the commands decided, the
	// fate of each command in the order the client sent them: why is
	// "" if the reference was set, else the reason it was refused.
	Ref(name plumbing.ReferenceName, old, new plumbing.Hash, why string)

	// Done is called last, exactly once.
	Done()
}

// maxKept bounds the bytes of commits, trees and tags a streamer keeps
// from a pack to diff trees as they arrive; past it, the paths under
// trees not kept are told once the pack is stored.
const maxKept = 64 << 20

// A streamer follows the objects of a pushed pack as checkPack reads
// them, keeps the commits, trees and tags, and walks each command's
// old and new trees as far as what has arrived allows, telling a
// PushListener of each changed path.
type streamer struct {
	repo storer.EncodedObjectStorer // holds the old trees, and bases of a thin pack
	l    PushListener

	types  map[int64]int8          // pack offset → object type (of its result, for a delta)
	hashes map[int64]plumbing.Hash // pack offset → hash, of objects kept
	kept   map[plumbing.Hash][]byte
	size   int64 // bytes in kept

	trees map[plumbing.Hash][]diffTask // tasks waiting for a tree
	tips  map[plumbing.Hash][]tipWait  // commands waiting for a commit or tag
}

// diffTask is a pair of trees to compare under path dir; old or new is
// zero for none.
type diffTask struct {
	dir      string
	old, new plumbing.Hash
}

func newStreamer(repo storer.EncodedObjectStorer, l PushListener) *streamer {
	return &streamer{repo: repo, l: l, types: map[int64]int8{}, hashes: map[int64]plumbing.Hash{},
		kept: map[plumbing.Hash][]byte{}, trees: map[plumbing.Hash][]diffTask{}, tips: map[plumbing.Hash][]tipWait{}}
}

// command starts the walk of a command that moves a reference from old
// to new (either may be zero). It may be called before the pack
// arrives; the old side must be in the repository.
func (s *streamer) command(old, new plumbing.Hash) {
	ot, _, _ := s.treeOf(old)
	s.tip(ot, new)
}

// tip diffs old against the tree of the commit (or tag) h, or makes it
// wait for the object on the way there that has not arrived.
func (s *streamer) tip(old, h plumbing.Hash) {
	nt, wait, ok := s.treeOf(h)
	if !ok {
		s.tips[wait] = append(s.tips[wait], tipWait{old, h})
		return
	}
	s.diff(diffTask{old: old, new: nt})
}

// tipWait is a command's walk waiting for an object on the way from
// its new commit or tag to its tree.
type tipWait struct{ old, tip plumbing.Hash }

// treeOf returns the tree of the commit h names (through tags), zero if
// it names none, or false and the object on the way that has not
// arrived.
func (s *streamer) treeOf(h plumbing.Hash) (tree, wait plumbing.Hash, ok bool) {
	for range 16 {
		if h.IsZero() {
			return h, h, true
		}
		typ, data, ok := s.lookup(h)
		if !ok {
			return plumbing.ZeroHash, h, false
		}
		switch typ {
		case plumbing.CommitObject:
			return headerHash(data, "tree "), h, true
		case plumbing.TagObject:
			h = headerHash(data, "object ")
		case plumbing.TreeObject:
			return h, h, true
		default:
			return plumbing.ZeroHash, h, true
		}
	}
	return plumbing.ZeroHash, h, true
}

// headerHash returns the hash on the first header line of a commit or
// tag that starts with key, or zero.
func headerHash(data []byte, key string) plumbing.Hash {
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte(key)); ok {
			if h, ok := parseHash(string(v)); ok {
				return h
			}
			break
		}
		data = rest
	}
	return plumbing.ZeroHash
}

// lookup returns an object's type and content, from those kept of the
// pack or from the repository.
func (s *streamer) lookup(h plumbing.Hash) (plumbing.ObjectType, []byte, bool) {
	if d, ok := s.kept[h]; ok {
		return plumbing.ObjectType(d[0]), d[1:], true
	}
	o, err := s.repo.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, nil, false
	}
	switch o.Type() {
	case plumbing.CommitObject, plumbing.TagObject, plumbing.TreeObject:
	default:
		return o.Type(), nil, true
	}
	if o.Size() > maxKept {
		return 0, nil, false
	}
	r, err := o.Reader()
	if err != nil {
		return 0, nil, false
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxKept))
	if err != nil {
		return 0, nil, false
	}
	return o.Type(), data, true
}

// diff compares the trees of t, telling the paths whose trees are
// here and leaving the rest waiting for their new tree.
func (s *streamer) diff(t diffTask) {
	var oldE, newE []treeEntry
	if !t.new.IsZero() {
		typ, data, ok := s.lookup(t.new)
		if !ok {
			s.trees[t.new] = append(s.trees[t.new], t)
			return
		}
		if typ != plumbing.TreeObject {
			return
		}
		newE = parseTree(data)
	}
	if !t.old.IsZero() {
		if typ, data, ok := s.lookup(t.old); ok && typ == plumbing.TreeObject {
			oldE = parseTree(data)
		}
	}
	old := make(map[string]treeEntry, len(oldE))
	for _, e := range oldE {
		old[e.name] = e
	}
	for _, n := range newE {
		p := join(t.dir, n.name)
		o, had := old[n.name]
		delete(old, n.name)
		switch {
		case had && o.mode == n.mode && o.hash == n.hash:
		case n.mode == modeGitlink:
			if had {
				s.gone(p, o)
			}
		case n.mode == modeTree:
			if had {
				if o.mode == modeTree {
					s.diff(diffTask{dir: p, old: o.hash, new: n.hash})
					continue
				}
				s.gone(p, o)
			}
			s.diff(diffTask{dir: p, new: n.hash})
		case had && o.mode != modeTree && o.mode != modeGitlink:
			s.l.Path("update", p, n.hash)
		default:
			if had {
				s.gone(p, o)
			}
			s.l.Path("create", p, n.hash)
		}
	}
	for _, e := range oldE {
		if _, ok := old[e.name]; ok {
			s.gone(join(t.dir, e.name), e)
		}
	}
}

// gone tells the deletion of the old entry e at p: a file, or every
// file under a tree.
func (s *streamer) gone(p string, e treeEntry) {
	switch e.mode {
	case modeGitlink:
	case modeTree:
		s.diff(diffTask{dir: p, old: e.hash})
	default:
		s.l.Path("delete", p, plumbing.ZeroHash)
	}
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Tree entry modes that matter here.
const (
	modeTree    = 0o40000
	modeGitlink = 0o160000
)

type treeEntry struct {
	name string
	mode uint32
	hash plumbing.Hash
}

// parseTree parses a tree object's entries (MODE SP NAME NUL HASH...),
// stopping at the first malformed one.
func parseTree(data []byte) []treeEntry {
	var es []treeEntry
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			break
		}
		mode, err := strconv.ParseUint(string(data[:sp]), 8, 32)
		if err != nil {
			break
		}
		rest := data[sp+1:]
		nul := bytes.IndexByte(rest, 0)
		if nul < 0 || len(rest) < nul+1+20 {
			break
		}
		var h plumbing.Hash
		copy(h[:], rest[nul+1:nul+21])
		es = append(es, treeEntry{name: string(rest[:nul]), mode: uint32(mode), hash: h})
		data = rest[nul+21:]
	}
	return es
}

// The part of a streamer checkPack calls, object by object.

// want says whether checkPack should hand over the inflated content of
// the object at offset start, of pack type typ and inflated size size
// (for a delta, its base at offset baseOff or with hash baseHash), and
// for a delta returns the base's content and type. It records the
// object's type either way.
func (s *streamer) want(start int64, typ int, size, baseOff int64, baseHash plumbing.Hash) (base []byte, rtyp int8, ok bool) {
	if s == nil {
		return nil, 0, false
	}
	switch typ {
	case objCommit, objTree, objTag:
		s.types[start] = int8(typ)
		return nil, int8(typ), s.size+size <= maxKept
	case objOFSDelta, objREFDelta:
		var bh plumbing.Hash
		var bt int8
		if typ == objOFSDelta {
			bt = s.types[baseOff]
			bh = s.hashes[baseOff]
		} else {
			bh = baseHash
			if t, data, ok := s.lookup(bh); ok && (t == plumbing.CommitObject || t == plumbing.TreeObject || t == plumbing.TagObject) {
				bt, base = int8(t), data
			}
		}
		s.types[start] = bt
		if bt != objCommit && bt != objTree && bt != objTag {
			return nil, 0, false
		}
		if base == nil {
			if d, ok := s.kept[bh]; ok {
				base = d[1:]
			}
		}
		return base, bt, base != nil && s.size+size <= maxKept
	}
	s.types[start] = int8(typ)
	return nil, 0, false
}

// object takes the content of the object at start that want asked for:
// data is the object, or for a delta (base not nil) the delta to apply
// to base. A delta that does not apply is left alone: go-git's parser
// refuses the pack after.
func (s *streamer) object(start int64, typ int8, base, data []byte) {
	if base != nil {
		var err error
		if data, err = packfile.PatchDelta(base, data); err != nil {
			return
		}
	}
	if s.size+int64(len(data)) > maxKept {
		return
	}
	h := plumbing.ComputeHash(plumbing.ObjectType(typ), data)
	kept := make([]byte, 1+len(data))
	kept[0] = byte(typ)
	copy(kept[1:], data)
	s.kept[h] = kept
	s.size += int64(len(kept))
	s.hashes[start] = h
	s.arrived(h)
}

// arrived resumes what waited for the object h.
func (s *streamer) arrived(h plumbing.Hash) {
	if ws, ok := s.tips[h]; ok {
		delete(s.tips, h)
		for _, w := range ws {
			s.tip(w.old, w.tip)
		}
	}
	if ts, ok := s.trees[h]; ok {
		delete(s.trees, h)
		for _, t := range ts {
			s.diff(t)
		}
	}
}

// finish tells what is still waiting, once the pack is stored in the
// repository (trees past maxKept, tags whose target came later).
// What the repository lacks even then is left untold: the push is
// refused for a missing object.
func (s *streamer) finish() {
	for range 1 << 20 {
		if len(s.tips) == 0 && len(s.trees) == 0 {
			return
		}
		tips, trees := s.tips, s.trees
		s.tips, s.trees = map[plumbing.Hash][]tipWait{}, map[plumbing.Hash][]diffTask{}
		progress := false
		for h, ws := range tips {
			if _, _, ok := s.lookup(h); !ok {
				continue
			}
			progress = true
			for _, w := range ws {
				s.tip(w.old, w.tip)
			}
		}
		for h, ts := range trees {
			if _, _, ok := s.lookup(h); !ok {
				continue
			}
			progress = true
			for _, t := range ts {
				s.diff(t)
			}
		}
		if !progress {
			return
		}
	}
}

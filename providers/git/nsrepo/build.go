package nsrepo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"cheshire/styx"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// The identity of the commits Open makes.
const (
	identName  = "cheshire"
	identEmail = "cheshire@localhost"
)

// mainRef is the one branch of a repository.
const mainRef plumbing.ReferenceName = "refs/heads/main"

// maxNotes bounds the "Not included" lines of a commit message.
const maxNotes = 100

// errLimit is wrapped by the errors of a subtree over the limits.
var errLimit = errors.New("too large")

// builder walks a subtree into the objects of a repository.
type builder struct {
	rs    *Repos
	st    *memory.Storage
	top   string // the subtree's path, "/dns/zones"
	files int
	bytes int64
	notes []string // what was left out: "x/ctl: permission denied"
}

// build makes the repository of the subtree at names (path, in
// canonical form) of root.
func (rs *Repos) build(ctx context.Context, root styx.File, names []string, path string) (*gogit.Repository, error) {
	dir, err := styx.WalkFile(ctx, root, names)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", path, err)
	}
	defer dir.Clunk()
	if dir.Qid().Type&styx.QTDIR == 0 {
		return nil, errNotDir(path)
	}
	b := &builder{rs: rs, st: memory.NewStorage(), top: path}
	ents, err := readDir(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", path, err)
	}
	tree, err := b.tree(ctx, dir, "", ents)
	if err != nil {
		return nil, err
	}
	if tree.IsZero() {
		if tree, err = putTree(b.st, nil); err != nil {
			return nil, err
		}
	}
	head, err := b.commit(tree)
	if err != nil {
		return nil, err
	}
	if h := rs.hist.get(path); h == nil || h.head != head {
		b.keep(head)
	}
	for _, ref := range []*plumbing.Reference{
		plumbing.NewHashReference(mainRef, head),
		plumbing.NewSymbolicReference(plumbing.HEAD, mainRef),
	} {
		if err := b.st.SetReference(ref); err != nil {
			return nil, err
		}
	}
	return gogit.Open(b.st, nil)
}

// commit returns the head of the subtree whose tree is tree: the
// path's last head if it has that tree, else a new commit of tree,
// whose parent is that head if there is one.
func (b *builder) commit(tree plumbing.Hash) (plumbing.Hash, error) {
	sig := object.Signature{Name: identName, Email: identEmail, When: time.Unix(0, 0).UTC()}
	c := &object.Commit{TreeHash: tree, Message: b.message()}
	if h := b.rs.hist.get(b.top); h != nil {
		for _, o := range h.objects {
			b.st.SetEncodedObject(o)
		}
		if pc, err := object.GetCommit(b.st, h.head); err == nil {
			if pc.TreeHash == tree {
				return pc.Hash, nil // the files are as they were
			}
			c.ParentHashes = []plumbing.Hash{pc.Hash}
			sig.When = pc.Committer.When
		}
	}
	c.Author, c.Committer = sig, sig
	return putObject(b.st, c.Encode)
}

// keep makes head, and every object of the repository, the path's
// history: all of them are reachable from head, as the objects of the
// previous head are from its child.
func (b *builder) keep(head plumbing.Hash) {
	h := &history{path: b.top, head: head, objects: make([]plumbing.EncodedObject, 0, len(b.st.Objects))}
	for _, o := range b.st.Objects {
		h.objects = append(h.objects, o)
		h.bytes += o.Size()
	}
	if !b.rs.hist.put(h) {
		b.rs.o.Log.Warn("git: history not kept", "path", b.top, "bytes", h.bytes)
	}
}

// message is the commit message: the path, and what was left out.
func (b *builder) message() string {
	var m strings.Builder
	fmt.Fprintf(&m, "cheshire: %s\n", b.top)
	if len(b.notes) > 0 {
		m.WriteString("\nNot included:\n")
		for i, n := range b.notes {
			if i == maxNotes {
				fmt.Fprintf(&m, "\t… and %d more\n", len(b.notes)-maxNotes)
				break
			}
			fmt.Fprintf(&m, "\t%s\n", n)
		}
	}
	return m.String()
}

// note records that the file rel was left out, and why.
func (b *builder) note(rel string, why string) {
	b.notes = append(b.notes, rel+": "+oneLine(why))
	b.rs.o.Log.Info("git: left out", "path", b.top, "file", rel, "why", why)
}

// count adds a file or directory and n bytes to the subtree's size.
func (b *builder) count(n int64) error {
	b.files++
	b.bytes += n
	return b.rs.checkSize(b.top, b.files, b.bytes)
}

// checkSize fails if files and bytes are over the limits.
func (rs *Repos) checkSize(path string, files int, bytes int64) error {
	if files > rs.o.MaxFiles {
		return fmt.Errorf("git: %s: more than %d files: %w", path, rs.o.MaxFiles, errLimit)
	}
	if bytes > rs.o.MaxBytes {
		return fmt.Errorf("git: %s: more than %d bytes: %w", path, rs.o.MaxBytes, errLimit)
	}
	return nil
}

// readDir reads the entries of directory d, sorted by name; d is left as
// it was.
func readDir(ctx context.Context, d styx.File) ([]styx.Dir, error) {
	_, c, err := d.Walk(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer c.Clunk()
	if _, err := c.Open(ctx, styx.OREAD); err != nil {
		return nil, err
	}
	ents, err := c.ReadDir(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return ents, nil
}

// leftOut says why an entry is left out, or "".
func leftOut(e styx.Dir) string {
	switch {
	case e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00"):
		return "bad name"
	case strings.EqualFold(e.Name, ".git"):
		return "name reserved by git"
	case e.Mode&styx.DMAUTH != 0:
		return "authentication file"
	case e.Mode&styx.DMAPPEND != 0:
		return "append-only"
	case e.Mode&styx.DMEXCL != 0:
		return "exclusive use"
	}
	return ""
}

// tree makes the tree of directory d (at rel in the subtree) whose
// entries are ents, and returns its hash, or the zero hash if it holds
// nothing. Its errors fail the clone; a file or directory that cannot
// be read is noted and left out.
func (b *builder) tree(ctx context.Context, d styx.File, rel string, ents []styx.Dir) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	for _, e := range ents {
		name := e.Name
		sub := name
		if rel != "" {
			sub = rel + "/" + name
		}
		if why := leftOut(e); why != "" {
			b.note(sub, why)
			continue
		}
		if e.Mode&styx.DMDIR != 0 {
			if err := b.count(0); err != nil {
				return plumbing.ZeroHash, err
			}
			h, err := b.subdir(ctx, d, name, sub)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			if !h.IsZero() {
				entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
			}
			continue
		}
		h, err := b.file(ctx, d, e, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if h.IsZero() {
			continue
		}
		mode := filemode.Regular
		if e.Mode&0111 != 0 {
			mode = filemode.Executable
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: mode, Hash: h})
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	return putTree(b.st, entries)
}

// subdir makes the tree of the directory name of d, at sub in the
// subtree, or notes why it cannot and gives the zero hash.
func (b *builder) subdir(ctx context.Context, d styx.File, name, sub string) (plumbing.Hash, error) {
	f, err := styx.WalkFile(ctx, d, []string{name})
	if err != nil {
		return plumbing.ZeroHash, b.skip(ctx, sub, err)
	}
	defer f.Clunk()
	if f.Qid().Type&styx.QTDIR == 0 {
		b.note(sub, "not a directory")
		return plumbing.ZeroHash, nil
	}
	ents, err := readDir(ctx, f)
	if err != nil {
		return plumbing.ZeroHash, b.skip(ctx, sub, err)
	}
	return b.tree(ctx, f, sub, ents)
}

// file makes the blob of the file e of directory d, at sub in the
// subtree, or notes why it cannot and gives the zero hash.
func (b *builder) file(ctx context.Context, d styx.File, e styx.Dir, sub string) (plumbing.Hash, error) {
	key := cacheKey{path: b.top + "/" + sub, qid: e.Qid, length: e.Length, mtime: e.Mtime}
	if e.Qid.Vers != 0 {
		if o := b.rs.cache.get(key); o != nil {
			if err := b.count(o.Size()); err != nil {
				return plumbing.ZeroHash, err
			}
			b.st.SetEncodedObject(o)
			return o.Hash(), nil
		}
	}
	room := b.rs.o.MaxBytes - b.bytes
	fctx, cancel := context.WithTimeout(ctx, b.rs.o.ReadTimeout)
	data, err := styx.ReadFile(fctx, d, e.Name, room+1)
	cancel()
	if err != nil {
		return plumbing.ZeroHash, b.skip(ctx, sub, err)
	}
	if err := b.count(int64(len(data))); err != nil {
		return plumbing.ZeroHash, err
	}
	o := blob(data)
	b.st.SetEncodedObject(o)
	if e.Qid.Vers != 0 {
		b.rs.cache.put(key, o)
	}
	return o.Hash(), nil
}

// skip notes that sub is left out because of err, unless ctx is done,
// which fails the clone.
func (b *builder) skip(ctx context.Context, sub string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("git: %s: %w", b.top, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		b.note(sub, "read timed out")
		return nil
	}
	b.note(sub, err.Error())
	return nil
}

// blob returns the blob of data, its hash computed (so that it may be
// shared between goroutines).
func blob(data []byte) *plumbing.MemoryObject {
	o := &plumbing.MemoryObject{}
	o.SetType(plumbing.BlobObject)
	o.Write(data)
	o.Hash()
	return o
}

// putTree stores the tree of entries, sorting them in git's order.
func putTree(st *memory.Storage, entries []object.TreeEntry) (plumbing.Hash, error) {
	sort.Sort(object.TreeEntrySorter(entries))
	t := &object.Tree{Entries: entries}
	return putObject(st, t.Encode)
}

// putObject stores the object encode makes.
func putObject(st *memory.Storage, encode func(plumbing.EncodedObject) error) (plumbing.Hash, error) {
	o := &plumbing.MemoryObject{}
	if err := encode(o); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: %w", err)
	}
	o.Hash()
	return st.SetEncodedObject(o)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

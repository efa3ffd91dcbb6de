// Package nsrepo presents any directory of a namespace as a git
// repository, made in memory at each request from the files as they
// are, and writes a push back through the namespace, file by file.
//
// # The repository
//
// Open walks the subtree at a path and builds a repository in memory
// (no copy on disk) with one branch, refs/heads/main (HEAD names it),
// whose commit holds the subtree's files: a file is a blob of mode
// 100644, or 100755 if any of its execute bits is set; a directory is
// a tree, left out when it holds nothing git can keep. The commit's
// author and committer are "cheshire <cheshire@localhost>" and its
// message names the path, so the same content always gives the same
// commit, and `git pull` of an unchanged subtree is "Already up to
// date". The first commit of a path is dated Unix time 0 and has no
// parent. The Repos remembers each path's last commit (its head) with
// its history (see Histories): when the files have changed since, by a
// push or otherwise, the new commit's parent is that head, and it is
// dated as its parent, so that a client's pull is a fast-forward;
// after a push, the head is the commit pushed.
//
// Some files are left out, each named with its reason in the commit
// message ("Not included:" lines) and in a log line: files and
// directories that cannot be opened or read (permission denied, a
// read that fails, or one that takes longer than Options.ReadTimeout),
// append-only and exclusive-use files (logs and event streams, whose
// reads may block and which cannot be rewritten), authentication
// files, and entries named .git, which git refuses. A push never
// touches a file left out: it is in neither tree of the push, and a
// push that adds a file of the same name fails with "file already
// exists".
//
// A subtree of more than Options.MaxFiles files and directories, or of
// more than Options.MaxBytes bytes of file content, is refused with
// "git: PATH: more than N files" or "… bytes", so a clone cannot
// exhaust the memory.
//
// # The blob cache
//
// A Repos remembers the blobs it made, keyed by the file's path, qid
// (path and version), length and mtime, at most Options.MaxCache
// entries and Options.MaxCacheBytes bytes (least recently used first
// out), so an unchanged file is neither read nor hashed again at the
// next clone. A file whose qid.vers is 0 is read every time, as a
// server that does not count versions says so by 0 (Plan 9's
// convention). BUG: a server that changes a file's content without
// changing its version, length or mtime has the old content served.
// A Repos is meant for one namespace (one user's): its cache and
// histories must not be shared between users, whose files may have
// the same qids.
//
// # Pushes
//
// Receive applies a push. Only refs/heads/main may be updated, and
// only from the commit Open made (smarthttp has checked that the
// reference still holds it) to a commit that descends from it, or to
// any commit with the same tree; anything else is refused ("not a
// fast-forward of the namespace: fetch first"). The pushed tree must
// hold only files and directories (no symbolic links or submodules),
// must not change a file into a directory or back, and is held to
// MaxFiles and MaxBytes.
//
// The changes between the two trees are applied in two passes. The
// first changes nothing: it walks to every file to be written or
// removed and opens each file to be written for writing (without
// OTRUNC), and checks that every file to be created does not exist and
// that its directory exists or is created by the push. Any failure
// refuses the push with nothing written. The second pass applies the
// changes in this order: directories created (parents first); changed
// files rewritten (OWRITE|OTRUNC, from offset 0); new files created
// (mode 0644 or 0755, directories 0755, before the server's own
// rules); execute bits changed (wstat); files removed; and lastly
// directories left without entries by the push removed, as far as the
// server allows (a directory that still holds a file left out stays).
//
// If a change fails (the namespace refuses a file's content, say), the
// push fails with "git: PATH: ERROR", the namespace path of that file
// and its error, which the git client prints as the reason; the file
// is left as it was (it is read back and, if it changed, rewritten
// with its old content), and so, as far as possible, are the files of
// the push already changed: they are undone in reverse order, a
// rewritten file written again with its old content, a created file or
// directory removed, a mode set back. Undoing is a change like any
// other and may itself fail; then the error ends with "; not restored:
// PATH…" and each failure is logged. Removals come last because their
// undoing (creating the file again with its old content and mode)
// cannot restore its owner, group or qid.
//
// A change made in the namespace after the client's clone or fetch
// makes the push fail (git says "fetch first", or "stale info" when
// the change falls between the push's two requests), as the commit
// Open makes for the push is no longer the client's. The namespace is
// not locked during the push itself: a file changed by another client
// between that Open and the write is overwritten. Pushes to one path
// of a Repos are serialized.
//
// # Histories
//
// A path's head and every object it reaches are kept in memory, at
// most Options.MaxHistory bytes over all paths, least recently changed
// first out; the objects are shared with the blob cache and the
// repositories made. BUG: after a restart, or once a path's history is
// dropped, the path's next commit has no parent again, and a client's
// pull fails with "refusing to merge unrelated histories" (clone
// again).
package nsrepo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
	"cheshire/styx"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Default limits.
const (
	DefaultMaxFiles      = 10000
	DefaultMaxBytes      = 32 << 20
	DefaultMaxCache      = 4096
	DefaultMaxCacheBytes = 32 << 20
	DefaultMaxHistory    = 64 << 20
	DefaultReadTimeout   = 10 * time.Second
)

// Options configure a Repos; zero fields take the defaults.
type Options struct {
	// MaxFiles bounds the files and directories of a subtree, and
	// MaxBytes the total length of its files, at a clone and in a
	// pushed tree.
	MaxFiles int
	MaxBytes int64

	// MaxCache bounds the entries of the blob cache, and MaxCacheBytes
	// the bytes of file content they hold.
	MaxCache      int
	MaxCacheBytes int64

	// MaxHistory bounds the bytes of the histories kept, over all
	// paths.
	MaxHistory int64

	// ReadTimeout bounds the reading of one file at a clone; a file
	// that takes longer is left out.
	ReadTimeout time.Duration

	// Log receives a line per file left out, per push and per change
	// that could not be undone; nil discards them.
	Log *slog.Logger
}

// Repos makes the repositories of the subtrees of one namespace. Its
// methods may be called concurrently.
type Repos struct {
	attach func(ctx context.Context) (styx.File, error)
	o      Options
	cache  *blobCache
	hist   *histories

	mu    sync.Mutex
	locks map[string]*sync.Mutex // guarded by mu: path → held during a push
}

// An Update is a reference changed by a push: Old is plumbing.ZeroHash
// for a reference created, New for one deleted. It has the fields of
// smarthttp.RefUpdate, so one converts to the other.
type Update struct {
	Name     plumbing.ReferenceName
	Old, New plumbing.Hash
}

// New returns the Repos of the namespace whose root attach gives. Each
// Open and Receive calls attach once and clunks the File it returns;
// to use one root File for ever, pass a function that clones it
// (styx.WalkFile(ctx, root, nil)).
func New(attach func(ctx context.Context) (styx.File, error), o Options) *Repos {
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxCache <= 0 {
		o.MaxCache = DefaultMaxCache
	}
	if o.MaxCacheBytes <= 0 {
		o.MaxCacheBytes = DefaultMaxCacheBytes
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = DefaultMaxHistory
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Repos{
		attach: attach,
		o:      o,
		cache:  newBlobCache(o.MaxCache, o.MaxCacheBytes),
		hist:   newHistories(o.MaxHistory),
		locks:  map[string]*sync.Mutex{},
	}
}

// Open returns a new in-memory repository of the subtree at path
// ("/dns/zones"; "" or "/" is the root). A path that does not exist
// fails with an error wrapping plan9.ErrNotFound, one that is not a
// directory with one wrapping plan9.ErrNotDir.
func (rs *Repos) Open(ctx context.Context, path string) (*gogit.Repository, error) {
	names, path, err := cleanPath(path)
	if err != nil {
		return nil, err
	}
	root, err := rs.attach(ctx)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", path, err)
	}
	defer root.Clunk()
	return rs.build(ctx, root, names, path)
}

// cleanPath splits path into names and gives it back in its canonical
// form, "/a/b"; ".." is refused.
func cleanPath(path string) ([]string, string, error) {
	names := styx.SplitPath(path)
	for _, n := range names {
		if n == ".." {
			return nil, "", fmt.Errorf("git: %s: bad path", path)
		}
	}
	return names, "/" + strings.Join(names, "/"), nil
}

// lock returns the mutex serializing pushes to path.
func (rs *Repos) lock(path string) *sync.Mutex {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := rs.locks[path]
	if m == nil {
		m = new(sync.Mutex)
		rs.locks[path] = m
	}
	return m
}

// errNotDir is the error of Open for a path that is a file.
func errNotDir(path string) error { return fmt.Errorf("git: %s: %w", path, plan9.ErrNotDir) }

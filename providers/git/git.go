// Package git serves git repositories as files, at /git: refs to read
// and move with compare-and-swap, commits' trees to walk, objects to
// read, and a writable overlay of a branch to commit from. The
// repositories are ordinary bare repositories on disk, DIR/git/NAME.git,
// so the git command clones, fetches from and pushes to them by path.
//
//	/git/ctl                     create REPO | rm REPO | fork REPO NEWREPO; read: repo NAME lines
//	/git/REPO/ctl                commit BRANCH MESSAGE; read: branch and tag lines
//	/git/REPO/HEAD               the hash HEAD resolves to; write NEW or OLD NEW
//	/git/REPO/refs/heads/BRANCH  a branch; write NEW or OLD NEW; create, remove
//	/git/REPO/refs/tags/TAG      a tag; likewise
//	/git/REPO/log                HASH EMAIL UNIXTIME SUBJECT, from HEAD, newest first
//	/git/REPO/events             create PATH BLOB, update PATH BLOB, delete PATH, ref REF OLD NEW
//	/git/REPO/tree/REF/...       the files of a commit (branch, tag or hash), read-only
//	/git/REPO/object/HASH        an object's raw content
//	/git/REPO/work/BRANCH/...    a writable overlay of a branch's tip
//
// Lock order: Repos.mu before repo.mu; an overlay's mu before repo.refMu.
package git

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Options configure a Repos.
type Options struct {
	Owner string           // owner of the files; "" for synth's default
	Now   func() time.Time // the clock of commits made through work/ (default time.Now)
}

// Repos is the set of repositories under one data directory, and the
// file tree serving them. It implements styx.Attacher. Its methods are
// safe for concurrent use.
type Repos struct {
	dir  string // DIR/git
	now  func() time.Time
	srv  *synth.Server
	root *synth.Dir

	mu    sync.Mutex
	repos map[string]*repo // guarded by mu

	// changed tells watchers of the files of a ref moved by a push
	// (module.Env's Changed); nil when no one is to be told.
	changed atomic.Pointer[func(op, path, newPath string)]
}

// repo is one repository.
type repo struct {
	rs   *Repos
	name string
	path string // DIR/git/NAME.git

	// refMu is held while a ref is checked and moved (the
	// compare-and-swap), and read-held while refs are read, so a
	// reader sees each move whole.
	refMu sync.RWMutex

	mu   sync.Mutex
	work map[string]*overlay // guarded by mu: by branch name

	events *synth.Log // REPO/events
	// eventMu is held while one change's lines go to events: for the
	// whole of a push told live (see Begin), for one block otherwise.
	// A ref moved through the files while it is held is queued in
	// eventQ, so that the move does not wait for a push; whoever
	// releases eventMu writes the queue first (release).
	eventMu sync.Mutex
	qmu     sync.Mutex
	eventQ  []string // guarded by qmu
}

// errNoRepo is the error of naming a repository that is not there.
var errNoRepo = errors.New("git: no such repository")

// New returns the repositories kept in dir/git, making the directory if
// need be and loading the repositories already there.
func New(dir string, opts Options) (*Repos, error) {
	r := &Repos{dir: filepath.Join(dir, "git"), now: opts.Now, repos: map[string]*repo{}}
	if r.now == nil {
		r.now = time.Now
	}
	if err := os.MkdirAll(r.dir, 0700); err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	r.root = synth.NewDir("/", 0555)
	if err := r.root.Add(synth.Ctl("ctl", 0664, r.ctlCmds(), r.ctlStatus)); err != nil {
		return nil, err
	}
	if err := r.root.Add(r.tokensFile()); err != nil {
		return nil, err
	}
	var sopts []synth.Option
	if opts.Owner != "" {
		sopts = append(sopts, synth.WithOwner(opts.Owner))
	}
	r.srv = synth.NewServer(r.root, sopts...)
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("git: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".git")
		if !ok || !e.IsDir() || checkName(name) != nil {
			continue
		}
		if err := r.add(name); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Attach serves the tree to uname.
func (r *Repos) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return r.srv.Attach(ctx, uname, aname, auth)
}

// checkName reports whether name may name a repository: letters, digits,
// '-', '_' and '.' (not first), at most 64 bytes, and not "ctl".
func checkName(name string) error {
	bad := fmt.Errorf("git: bad repository name %q: want letters, digits, -, _ or . (not first), at most 64", name)
	if name == "" || len(name) > 64 || name[0] == '.' {
		return bad
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return bad
		}
	}
	if name == "ctl" || name == "tokens" {
		return fmt.Errorf("git: bad repository name %q: reserved", name)
	}
	return nil
}

// Names returns the names of the repositories, sorted.
func (r *Repos) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.repos))
	for n := range r.repos {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// lookup returns repository name.
func (r *Repos) lookup(name string) (*repo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rp := r.repos[name]
	if rp == nil {
		return nil, errNoRepo
	}
	return rp, nil
}

// Path returns the directory of the bare repository name, for serving it
// with other tools (git's smart HTTP). It fails with "git: no such
// repository" if there is none.
func (r *Repos) Path(name string) (string, error) {
	rp, err := r.lookup(name)
	if err != nil {
		return "", err
	}
	return rp.path, nil
}

// Open opens repository name with go-git. Each call returns a new
// *Repository, which the caller may use from one goroutine at a time
// (go-git's storage is not safe for concurrent use); refs moved through
// it should be moved with CheckAndSetReference.
//
// Its storage keeps up to 16 pack files open while it is used (go-git
// otherwise opens a pack file again for every object read: 27% of the
// time of a clone's history walk), so the caller closes it when done
// with it: Close of the repository's Storer, which smart HTTP does at
// the end of each request.
func (r *Repos) Open(name string) (*gogit.Repository, error) {
	rp, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	return rp.openKeeping(16)
}

// open opens the repository's storage.
func (rp *repo) open() (*gogit.Repository, error) { return rp.openKeeping(0) }

// openKeeping opens the repository's storage, keeping up to keep pack
// files open until its Storer is closed (0: each read opens its own).
func (rp *repo) openKeeping(keep int) (*gogit.Repository, error) {
	if _, err := os.Stat(filepath.Join(rp.path, "HEAD")); err != nil {
		return nil, errNoRepo
	}
	g, err := OpenBare(rp.path, keep)
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", rp.name, err)
	}
	return g, nil
}

// OpenBare opens the bare repository in directory path with go-git,
// keeping up to keep pack files open until the repository's Storer is
// closed (0: none kept, nothing to close).
func OpenBare(path string, keep int) (*gogit.Repository, error) {
	st := filesystem.NewStorageWithOptions(atomicFS{osfs.New(path), path}, cache.NewObjectLRUDefault(), filesystem.Options{MaxOpenDescriptors: keep})
	g, err := gogit.Open(st, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	return g, nil
}

// newRepo returns repository name, kept in directory path.
func (r *Repos) newRepo(name, path string) *repo {
	return &repo{rs: r, name: name, path: path, work: map[string]*overlay{}, events: synth.NewLog(0)}
}

// add serves repository name, whose directory exists.
func (r *Repos) add(name string) error {
	rp := r.newRepo(name, filepath.Join(r.dir, name+".git"))
	d := rp.files()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.root.Add(d); err != nil {
		return err
	}
	r.repos[name] = rp
	return nil
}

// tmpPath returns a fresh name in DIR/git for a directory being made
// or removed; it starts with '.', so no repository has it.
func (r *Repos) tmpPath(what string) string {
	var b [8]byte
	rand.Read(b[:])
	return filepath.Join(r.dir, "."+what+"-"+hex.EncodeToString(b[:]))
}

// Create makes an empty bare repository name whose HEAD is
// refs/heads/main. It fails if the name is bad or taken.
func (r *Repos) Create(name string) error {
	return r.make(name, func(tmp string) error {
		_, err := gogit.PlainInitWithOptions(tmp, &gogit.PlainInitOptions{
			Bare:        true,
			InitOptions: gogit.InitOptions{DefaultBranch: plumbing.Main},
		})
		return err
	})
}

// Fork makes repository newname a copy of name's objects, refs, HEAD and
// config.
func (r *Repos) Fork(name, newname string) error {
	src, err := r.lookup(name)
	if err != nil {
		return err
	}
	return r.make(newname, func(tmp string) error {
		src.refMu.Lock()
		defer src.refMu.Unlock()
		return copyTree(src.path, tmp)
	})
}

// make makes repository name: fill fills a temporary directory, which
// is then renamed into place and served.
func (r *Repos) make(name string, fill func(tmp string) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repos[name] != nil {
		return fmt.Errorf("git: %s: %w", name, plan9.ErrExist)
	}
	dst := filepath.Join(r.dir, name+".git")
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("git: %s: %w", name, plan9.ErrExist)
	}
	tmp := r.tmpPath("new")
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("git: %s: %w", name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("git: %s: %w", name, err)
	}
	rp := r.newRepo(name, dst)
	if err := r.root.Add(rp.files()); err != nil {
		return err
	}
	r.repos[name] = rp
	return nil
}

// Remove deletes repository name and its files on disk.
func (r *Repos) Remove(name string) error {
	r.mu.Lock()
	rp := r.repos[name]
	if rp == nil {
		r.mu.Unlock()
		return errNoRepo
	}
	tmp := r.tmpPath("rm")
	if err := os.Rename(rp.path, tmp); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("git: %s: %w", name, err)
	}
	delete(r.repos, name)
	r.root.Remove(name)
	rp.events.Close()
	r.mu.Unlock()
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("git: %s: %w", name, err)
	}
	return nil
}

// copyTree copies the directory src to dst, which must not exist.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0755)
		case d.Type().IsRegular():
			return copyFile(p, to)
		}
		return nil // sockets, symlinks: not part of a bare repository
	})
}

// copyFile copies the regular file src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ctlCmds are the messages of /git/ctl.
func (r *Repos) ctlCmds() []synth.Cmd {
	return []synth.Cmd{
		{Name: "create", Min: 1, Max: 1, Usage: "create REPO", Run: func(_ context.Context, a []string) error { return r.Create(a[0]) }},
		{Name: "rm", Min: 1, Max: 1, Usage: "rm REPO", Run: func(_ context.Context, a []string) error { return r.Remove(a[0]) }},
		{Name: "fork", Min: 2, Max: 2, Usage: "fork REPO NEWREPO", Run: func(_ context.Context, a []string) error { return r.Fork(a[0], a[1]) }},
	}
}

// ctlStatus is the text of /git/ctl: a line per repository.
func (r *Repos) ctlStatus(context.Context) string {
	var b strings.Builder
	for _, n := range r.Names() {
		fmt.Fprintf(&b, "repo %s\n", n)
	}
	return b.String()
}

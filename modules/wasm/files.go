package wasm

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"

	"cheshire/modules/abi"
	"cheshire/plan9"
	"cheshire/styx"
)

// A file is one fid's file of an instance: a path in the guest's tree.
// Its info, taken at walk, gives its qid and the mode permissions are
// checked against; the files are owned by the module (uid and gid are
// its name), so the guest's permission bits say what others may do.
type file struct {
	in   *instance
	path string
	info abi.Info
	user string

	// Set by Open and Create, before any Read, Write or Clunk.
	open   bool
	handle uint32 // the guest's handle of an open file (0 for a directory)

	// eof is the offset of the end of file the guest reported with the
	// last read's data, or -1: a read there is answered at once, once.
	eof atomic.Int64
}

var _ styx.File = (*file)(nil)

// qidPath is a stable 64-bit hash of a path in the guest's tree.
func qidPath(path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(path))
	return h.Sum64()
}

func qidOf(path string, info abi.Info) styx.Qid {
	return styx.Qid{Type: uint8(info.Mode >> 24), Vers: info.Version, Path: qidPath(path)}
}

func (f *file) isDir() bool { return f.info.Mode&abi.DMDIR != 0 }

func (f *file) Qid() styx.Qid { return qidOf(f.path, f.info) }

// join is path/name, lexically: ".." goes up, never above the root.
func join(path, name string) string {
	if name == ".." {
		if path == "/" {
			return "/"
		}
		i := strings.LastIndexByte(path, '/')
		if i <= 0 {
			return "/"
		}
		return path[:i]
	}
	if path == "/" {
		return "/" + name
	}
	return path + "/" + name
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func (f *file) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	if len(names) == 0 {
		return nil, f.in.newFile(f.path, f.info, f.user), nil
	}
	path, info := f.path, f.info
	qids := make([]styx.Qid, 0, len(names))
	for _, name := range names {
		if info.Mode&abi.DMDIR == 0 {
			return qids, nil, plan9.ErrNotDir
		}
		if name != ".." && !validName(name) {
			return qids, nil, plan9.ErrBadName
		}
		if !f.allowed(info, plan9.OEXEC) {
			return qids, nil, plan9.ErrPerm
		}
		next := join(path, name)
		ni, err := f.in.stat(ctx, next, f.user)
		if err != nil {
			return qids, nil, err
		}
		path, info = next, ni
		qids = append(qids, qidOf(path, info))
	}
	return qids, f.in.newFile(path, info, f.user), nil
}

func (in *instance) newFile(path string, info abi.Info, user string) *file {
	f := &file{in: in, path: path, info: info, user: user}
	f.eof.Store(-1)
	return f
}

// allowed checks f's user's access to a file described by info.
func (f *file) allowed(info abi.Info, want uint8) bool {
	owner := f.in.name
	return plan9.Allowed(info.Mode, owner, owner, f.user, nil, want)
}

func (f *file) Open(ctx context.Context, mode uint8) (uint32, error) {
	want := mode & 3
	if mode&plan9.OTRUNC != 0 && want == plan9.OREAD {
		want = plan9.OWRITE
	}
	if !f.allowed(f.info, want) {
		return 0, plan9.ErrPerm
	}
	if f.isDir() {
		if want != plan9.OREAD && want != plan9.OEXEC {
			return 0, plan9.ErrIsDir
		}
		f.open = true
		return 0, nil
	}
	err := f.in.call(ctx, &abi.Request{Op: abi.OpOpen, Path: f.path, Mode: uint32(mode), User: f.user}, func(r *abi.Response) error {
		f.handle = r.Handle
		return nil
	})
	if err != nil {
		return 0, err
	}
	f.open = true
	return 0, nil
}

func (f *file) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if !f.isDir() {
		return nil, 0, plan9.ErrNotDir
	}
	if !validName(name) {
		return nil, 0, plan9.ErrBadName
	}
	if !f.allowed(f.info, plan9.OWRITE) {
		return nil, 0, plan9.ErrPerm
	}
	// As in Plan 9, the directory's permissions bound the new file's.
	if perm&plan9.DMDIR != 0 {
		perm &= ^uint32(0777) | f.info.Mode&0777
	} else {
		perm &= ^uint32(0666) | f.info.Mode&0666
	}
	path := join(f.path, name)
	nf := f.in.newFile(path, abi.Info{}, f.user)
	nf.open = true
	err := f.in.call(ctx, &abi.Request{Op: abi.OpCreate, Path: path, Mode: perm, Count: uint32(mode), User: f.user}, func(r *abi.Response) error {
		if len(r.Infos) != 1 {
			return fmt.Errorf("module %s: create %s: %d entries in the answer", f.in.name, path, len(r.Infos))
		}
		nf.handle, nf.info = r.Handle, r.Infos[0]
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return nf, 0, nil
}

func (f *file) Read(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, plan9.ErrBadOffset
	}
	if f.isDir() {
		return 0, plan9.ErrIsDir
	}
	if f.eof.CompareAndSwap(off, -1) {
		return 0, nil
	}
	var n int
	err := f.in.call(ctx, &abi.Request{Op: abi.OpRead, Handle: f.handle, Offset: uint64(off), Count: uint32(min(len(p), 1<<31)), User: f.user}, func(r *abi.Response) error {
		n = copy(p, r.Data)
		if r.Count != 0 && n > 0 && n == len(r.Data) {
			f.eof.Store(off + int64(n))
		}
		return nil
	})
	return n, err
}

func (f *file) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	var dirs []styx.Dir
	err := f.in.call(ctx, &abi.Request{Op: abi.OpReadDir, Path: f.path, User: f.user}, func(r *abi.Response) error {
		dirs = make([]styx.Dir, 0, len(r.Infos))
		for _, info := range r.Infos {
			if !validName(info.Name) {
				continue
			}
			dirs = append(dirs, f.in.dir(join(f.path, info.Name), info))
		}
		return nil
	})
	return dirs, err
}

func (f *file) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, plan9.ErrBadOffset
	}
	if f.isDir() {
		return 0, plan9.ErrIsDir
	}
	f.eof.Store(-1)
	var n int
	err := f.in.call(ctx, &abi.Request{Op: abi.OpWrite, Handle: f.handle, Offset: uint64(off), Data: p, User: f.user}, func(r *abi.Response) error {
		n = int(min(r.Count, uint32(len(p))))
		return nil
	})
	return n, err
}

func (f *file) Stat(ctx context.Context) (styx.Dir, error) {
	info, err := f.in.stat(ctx, f.path, f.user)
	if err != nil {
		return styx.Dir{}, err
	}
	if info.Mode&abi.DMDIR != f.info.Mode&abi.DMDIR {
		// The name is now another kind of file: this one is gone.
		return styx.Dir{}, plan9.ErrNotFound
	}
	return f.in.dir(f.path, info), nil
}

// dir is the directory entry of the file at path.
func (in *instance) dir(path string, info abi.Info) styx.Dir {
	name := path
	if i := strings.LastIndexByte(path, '/'); path != "/" && i >= 0 {
		name = path[i+1:]
	}
	d := styx.Dir{
		Qid:   qidOf(path, info),
		Mode:  info.Mode,
		Atime: info.Mtime,
		Mtime: info.Mtime,
		Name:  name,
		Uid:   in.name,
		Gid:   in.name,
		Muid:  in.name,
	}
	if info.Mode&abi.DMDIR == 0 {
		d.Length = info.Size
	}
	return d
}

// Wstat accepts only a wstat that changes nothing (a sync).
func (f *file) Wstat(ctx context.Context, d styx.Dir) error {
	null := styx.NullDir()
	if d.Mode != null.Mode || d.Mtime != null.Mtime || d.Atime != null.Atime ||
		d.Length != null.Length || d.Name != "" || d.Uid != "" || d.Gid != "" {
		return plan9.ErrWstat
	}
	return nil
}

func (f *file) Remove(ctx context.Context) error {
	if f.path == "/" {
		return plan9.ErrRemove
	}
	parent, err := f.in.stat(ctx, join(f.path, ".."), f.user)
	if err != nil {
		return err
	}
	if !f.allowed(parent, plan9.OWRITE) {
		return plan9.ErrPerm
	}
	return f.in.call(ctx, &abi.Request{Op: abi.OpRemove, Path: f.path, User: f.user}, func(*abi.Response) error { return nil })
}

// Clunk closes the guest's handle; its error (a refused commit) is the
// clunk's.
func (f *file) Clunk() error {
	if !f.open || f.handle == 0 {
		return nil
	}
	f.open = false
	return f.in.call(context.Background(), &abi.Request{Op: abi.OpClose, Handle: f.handle, User: f.user}, func(*abi.Response) error { return nil })
}

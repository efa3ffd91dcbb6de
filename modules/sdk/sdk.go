// Package sdk is what a cheshire module is written with: a Go program,
// compiled to WebAssembly, that serves a file tree the node mounts in
// its namespaces, and that may read and write the node owner's namespace
// and make HTTP requests within the permissions the owner granted.
//
// A module serves an FS: either its own implementation of the interface,
// or a tree made with NewDir and the ready-made files (Static, Gen, Ctl,
// ReadWrite, Filter, NewFile), in the spirit of the node's synth toolkit.
// It calls Serve from an init function; its main is never run. Its private
// persistent directory is /data, used with the os package as usual.
//
// A complete module, a greeting file and a ctl file that changes it:
//
//	package main
//
//	import (
//		"context"
//		"strings"
//
//		"cheshire/modules/sdk"
//	)
//
//	func main() {}
//
//	func init() {
//		greeting := "hello"
//		sdk.Serve(sdk.NewDir("/", 0555,
//			sdk.Gen("greeting", 0444, func(ctx context.Context) ([]byte, error) {
//				return []byte(greeting + ", " + sdk.User(ctx) + "\n"), nil
//			}),
//			sdk.Ctl("ctl", 0222, nil, func(ctx context.Context, data []byte) error {
//				greeting = strings.TrimSpace(string(data))
//				return nil
//			}),
//		))
//	}
//
// Build it, with a manifest beside it, with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o module.wasm .
//
// (cheshire module build does this and packs the manifest with it).
//
// Calls into a module are serialized by the node, so a tree and the
// functions it calls need no locking; they must not block waiting for
// other goroutines, which do not run between calls. A call has a CPU
// budget (one second unless the owner configured another); a module that
// exceeds it, or panics, fails that call and is stopped. The node starts
// it again only if its configuration says "restart on-failure" (the
// default is "restart never": it stays failed until the owner starts
// it), so state that must survive belongs in /data, written before the
// call returns.
//
// The package also builds for other platforms, where Serve records the FS
// and the namespace calls fail with ErrNotModule, so that module code can
// be tested natively.
package sdk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"

	"cheshire/modules/abi"
)

// Open modes (Plan 9's), as passed to Open and Create.
const (
	OREAD   uint8 = 0
	OWRITE  uint8 = 1
	ORDWR   uint8 = 2
	OEXEC   uint8 = 3
	OTRUNC  uint8 = 0x10
	ORCLOSE uint8 = 0x40
)

// Mode bits of Info.Mode besides the permission bits.
const (
	DMDIR    uint32 = 0x80000000
	DMAPPEND uint32 = 0x40000000
	DMEXCL   uint32 = 0x20000000
	DMTMP    uint32 = 0x04000000
)

// An FS is the file tree a module serves. Paths are slash-separated and
// absolute within the tree: "/" is its root, "/keys/a" a file in it; they
// never contain "." or ".." elements or empty names. The context carries
// the user the request is made for (see User).
type FS interface {
	// Stat describes the file at path.
	Stat(ctx context.Context, path string) (Info, error)
	// ReadDir lists the directory at path.
	ReadDir(ctx context.Context, path string) ([]Info, error)
	// Open opens the file (never a directory) at path with mode.
	Open(ctx context.Context, path string, mode uint8) (File, error)
}

// A CreateFS is an FS in which files can be made.
type CreateFS interface {
	FS
	// Create makes the file path with perm (DMDIR for a directory) and
	// opens it with mode. A directory is not opened: its File is nil.
	Create(ctx context.Context, path string, perm uint32, mode uint8) (File, Info, error)
}

// A RemoveFS is an FS from which files can be removed.
type RemoveFS interface {
	FS
	Remove(ctx context.Context, path string) error
}

// A File is an open file. The node calls it for one client's file
// descriptor until Close; an *os.File of /data is one.
type File interface {
	// ReadAt reads at off into p; at end of file it returns 0 (with or
	// without io.EOF).
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off and returns the count written. It must not
	// keep p.
	WriteAt(p []byte, off int64) (int, error)
	// Close releases the file. Its error is the reply to the client's
	// close, so a file that commits at close can refuse what was written.
	Close() error
}

// Info describes a file.
type Info struct {
	Name    string
	Mode    uint32 // permission bits, and DMDIR for a directory
	Size    int64
	Mtime   time.Time
	Version uint32 // changes when the content does; clients cache by it
}

// IsDir reports whether the file is a directory.
func (i Info) IsDir() bool { return i.Mode&DMDIR != 0 }

func (i Info) abi() abi.Info {
	var mtime uint32
	if !i.Mtime.IsZero() && i.Mtime.Unix() > 0 {
		mtime = uint32(i.Mtime.Unix())
	}
	return abi.Info{Name: i.Name, Mode: i.Mode, Size: uint64(max(i.Size, 0)), Mtime: mtime, Version: i.Version}
}

func infoFrom(a abi.Info) Info {
	return Info{Name: a.Name, Mode: a.Mode, Size: int64(min(a.Size, 1<<63-1)), Mtime: time.Unix(int64(a.Mtime), 0), Version: a.Version}
}

// An Error is a Plan 9 error string. The errors a module's files return
// reach the client as their text; these are the usual ones.
type Error string

func (e Error) Error() string { return string(e) }

// Is lets the standard errors match those of io/fs: errors.Is(ErrNotFound,
// fs.ErrNotExist) holds.
func (e Error) Is(target error) bool {
	switch e {
	case ErrNotFound:
		return target == fs.ErrNotExist
	case ErrPerm:
		return target == fs.ErrPermission
	case ErrExist:
		return target == fs.ErrExist
	}
	return false
}

// Standard errors.
const (
	ErrNotFound  Error = "file not found"
	ErrExist     Error = "file already exists"
	ErrPerm      Error = "permission denied"
	ErrNotDir    Error = "not a directory"
	ErrIsDir     Error = "Is a directory"
	ErrCreate    Error = "create prohibited"
	ErrRemove    Error = "remove prohibited"
	ErrBadCtl    Error = "unknown control message"
	ErrBadArgs   Error = "bad # args to command"
	ErrTooBig    Error = "file too big"
	ErrNotModule Error = "not running in a module"
)

type userKey struct{}

// User returns the user a request is made for.
func User(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// WithUser returns a context whose User is user, for testing an FS.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// A server dispatches the host's requests to an FS.
type server struct {
	fs      FS
	handles map[uint32]File
	next    uint32
	buf     []byte // read buffer
	out     []byte // encoded response, valid until the next call
	info    [1]abi.Info
	strings abi.Strings // paths and users, made once

	// The context of the last request's user, reused while the user is
	// the same: the node's requests come mostly from one.
	user    string
	userCtx context.Context
}

func newServer(f FS) *server {
	return &server{fs: f, handles: make(map[uint32]File), next: 1}
}

// call serves one encoded request and returns the encoded response,
// which stays valid until the next call.
func (s *server) call(b []byte) []byte {
	var req abi.Request
	var resp abi.Response
	if err := req.UnmarshalWith(b, &s.strings); err != nil {
		resp.Err = "bad request: " + err.Error()
	} else if err := s.serve(&req, &resp); err != nil {
		resp = abi.Response{Err: errString(err)}
	}
	s.out = resp.Append(s.out[:0])
	return s.out
}

func errString(err error) string {
	s := err.Error()
	if s == "" {
		s = "i/o error"
	}
	return s
}

func (s *server) serve(req *abi.Request, resp *abi.Response) error {
	if s.userCtx == nil || req.User != s.user {
		s.user, s.userCtx = req.User, WithUser(context.Background(), req.User)
	}
	ctx := s.userCtx
	switch req.Op {
	case abi.OpStat:
		info, err := s.fs.Stat(ctx, req.Path)
		if err != nil {
			return err
		}
		s.info[0] = info.abi()
		resp.Infos = s.info[:]
	case abi.OpReadDir:
		infos, err := s.fs.ReadDir(ctx, req.Path)
		if err != nil {
			return err
		}
		resp.Infos = make([]abi.Info, len(infos))
		for i := range infos {
			resp.Infos[i] = infos[i].abi()
		}
	case abi.OpOpen:
		f, err := s.fs.Open(ctx, req.Path, uint8(req.Mode))
		if err != nil {
			return err
		}
		resp.Handle = s.add(f)
	case abi.OpCreate:
		cfs, ok := s.fs.(CreateFS)
		if !ok {
			return ErrCreate
		}
		f, info, err := cfs.Create(ctx, req.Path, req.Mode, uint8(req.Count))
		if err != nil {
			return err
		}
		if f != nil {
			resp.Handle = s.add(f)
		}
		resp.Infos = []abi.Info{info.abi()}
	case abi.OpRead:
		f, ok := s.handles[req.Handle]
		if !ok {
			return Error("unknown handle")
		}
		if cap(s.buf) < int(req.Count) {
			s.buf = make([]byte, req.Count)
		}
		p := s.buf[:req.Count]
		if req.Offset > 1<<63-1 {
			return Error("bad offset")
		}
		n, err := f.ReadAt(p, int64(req.Offset))
		if errors.Is(err, io.EOF) {
			resp.Count = 1 // the data ends at end of file
		} else if err != nil {
			return err
		}
		resp.Data = p[:min(max(n, 0), len(p))]
	case abi.OpWrite:
		f, ok := s.handles[req.Handle]
		if !ok {
			return Error("unknown handle")
		}
		if req.Offset > 1<<63-1 {
			return Error("bad offset")
		}
		n, err := f.WriteAt(req.Data, int64(req.Offset))
		if err != nil {
			return err
		}
		resp.Count = uint32(min(max(n, 0), len(req.Data)))
	case abi.OpClose:
		f, ok := s.handles[req.Handle]
		if !ok {
			return Error("unknown handle")
		}
		delete(s.handles, req.Handle)
		return f.Close()
	case abi.OpRemove:
		rfs, ok := s.fs.(RemoveFS)
		if !ok {
			return ErrRemove
		}
		return rfs.Remove(ctx, req.Path)
	default:
		return Error("unknown request " + abi.OpName(req.Op))
	}
	return nil
}

func (s *server) add(f File) uint32 {
	for {
		h := s.next
		s.next++
		if s.next == 0 {
			s.next = 1
		}
		if _, used := s.handles[h]; !used {
			s.handles[h] = f
			return h
		}
	}
}

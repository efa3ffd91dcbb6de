package styx

import (
	"context"
	"errors"
	"io"

	"cheshire/plan9"
)

// A File is what one fid refers to in a served tree. The engine calls its
// methods; it never shares a File between fids (Walk with no names clones).
//
// Concurrency: several requests on the same fid may be in flight at once
// (pipelined reads and writes), so Read, Write and Stat may be called
// concurrently; Walk, Open, Create, Remove and Wstat of one File are not
// called concurrently with Open, Create or Clunk of the same File.
//
// Every method gets a context that is cancelled when the request is flushed
// or the connection ends; a method that may block must watch it.
type File interface {
	// Qid identifies the file. Its Type must stay constant.
	Qid() Qid

	// Walk walks names from this file, which the engine has checked is a
	// directory (when names is not empty) and not open. With no names it
	// returns a clone. It returns the qids of the names walked; if fewer than
	// len(names) (a partial walk) the returned File is nil and is ignored. An
	// error with no qids is the reply to the walk.
	Walk(ctx context.Context, names []string) ([]Qid, File, error)

	// Open prepares the file for I/O with mode (OREAD..OEXEC, OTRUNC,
	// ORCLOSE). The engine has checked that the fid is not open. It returns
	// the iounit (0: no preference).
	Open(ctx context.Context, mode uint8) (iounit uint32, err error)

	// Create makes name in this directory with perm and opens it with mode.
	// The returned File replaces this one on the fid.
	Create(ctx context.Context, name string, perm uint32, mode uint8) (File, uint32, error)

	// Read reads file data at off into p. For directories the engine calls
	// ReadDir instead.
	Read(ctx context.Context, p []byte, off int64) (int, error)

	// ReadDir lists an open directory. The engine calls it at offset 0 and
	// packs the entries itself, so providers never handle directory offsets.
	ReadDir(ctx context.Context) ([]Dir, error)

	// Write writes p at off and returns the count accepted.
	Write(ctx context.Context, p []byte, off int64) (int, error)

	// Stat returns the file's directory entry.
	Stat(ctx context.Context) (Dir, error)

	// Wstat changes the fields of d that are not "don't touch" values
	// (see NullDir). All or none of the changes are made. The engine has
	// checked that d's name, if any, is a valid file name, and that d
	// leaves type, dev and qid alone (each ~0 or equal to the file's
	// Stat) and keeps the DMDIR bit of the mode, so Wstat looks only at
	// name, mode, atime, mtime, length, uid, gid and muid.
	Wstat(ctx context.Context, d Dir) error

	// Remove removes the file. The engine clunks the fid afterwards, even on
	// error.
	Remove(ctx context.Context) error

	// Clunk releases the File. It is called exactly once, after the last
	// request that uses the fid has finished; when that is the Tclunk
	// itself, an error is sent as its reply (the fid is gone all the same),
	// so a file that commits what was written at clunk can refuse it. For an
	// ORCLOSE fid, Remove comes just before Clunk.
	Clunk() error
}

// Inline is implemented by a File whose walk, open, read, stat and
// clunk never block: they work in memory and return, with no I/O, no
// network and no waiting on other requests. The engine then runs those
// requests on the connection's reading goroutine, not on one of their
// own, which saves a hand-off between threads on every small request
// (about 5 µs a round trip on two cores; BENCHMARKS.md). Such a request
// is over before the next message is read, so a Tflush can never find
// it running. Inline is asked at each request, so a File may say false
// while it could block (a module reloading, say). Writes, creates,
// removes and wstats always get a goroutine of their own.
type Inline interface {
	Inline() bool
}

// Attacher gives the root File of a tree to an attaching user.
type Attacher interface {
	// Attach is called for Tattach. auth is the File of the afid, or nil
	// when the client sent NOFID.
	Attach(ctx context.Context, uname, aname string, auth File) (File, error)
}

// AttachFunc adapts a function to Attacher.
type AttachFunc func(ctx context.Context, uname, aname string, auth File) (File, error)

// Attach calls f.
func (f AttachFunc) Attach(ctx context.Context, uname, aname string, auth File) (File, error) {
	return f(ctx, uname, aname, auth)
}

// Authenticator is the optional Tauth hook: it returns the File of an
// authentication fid (its Qid type must have QTAUTH) for the client to
// read and write.
type Authenticator interface {
	Auth(ctx context.Context, uname, aname string) (File, error)
}

// WalkFile walks from f to names, at most MaxWalk names a step, and
// returns the file reached; f itself is left as it was (with no names,
// a clone). A walk that stops short fails with the step's error, or
// plan9.ErrNotFound if it gave none.
func WalkFile(ctx context.Context, f File, names []string) (File, error) {
	cur := f
	for first := true; first || len(names) > 0; first = false {
		n := min(len(names), MaxWalk)
		qids, nf, err := cur.Walk(ctx, names[:n])
		if cur != f {
			cur.Clunk()
		}
		if len(qids) < n || nf == nil {
			if err == nil {
				err = plan9.ErrNotFound
			}
			return nil, err
		}
		cur, names = nf, names[n:]
	}
	return cur, nil
}

// fileChunk is the most ReadFile and WriteFile move in one call of a
// File's Read or Write when its Open gave no iounit.
const fileChunk = 64 << 10

// ReadFile walks from root to path (split by SplitPath), opens the file
// OREAD, reads it from offset 0 until a Read returns no data or io.EOF,
// or until max bytes have come (max < 0: no limit), and clunks it; root
// is left as it was. A directory fails with plan9.ErrIsDir. On error
// the data is nil; errors are the File's own, unwrapped.
func ReadFile(ctx context.Context, root File, path string, max int64) ([]byte, error) {
	f, err := WalkFile(ctx, root, SplitPath(path))
	if err != nil {
		return nil, err
	}
	defer f.Clunk()
	if f.Qid().Type&QTDIR != 0 {
		return nil, plan9.ErrIsDir
	}
	iounit, err := f.Open(ctx, OREAD)
	if err != nil {
		return nil, err
	}
	chunk := int64(fileChunk)
	if iounit != 0 {
		chunk = int64(iounit)
	}
	if max >= 0 {
		chunk = min(chunk, max)
	}
	var data []byte
	buf := make([]byte, chunk)
	for max < 0 || int64(len(data)) < max {
		want := chunk
		if max >= 0 {
			want = min(want, max-int64(len(data)))
		}
		n, err := f.Read(ctx, buf[:want], int64(len(data)))
		data = append(data, buf[:n]...)
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return data, nil
}

// WriteFile walks from root to path (split by SplitPath) and opens the
// file OWRITE|OTRUNC, or, when the walk finds no such file
// (plan9.ErrNotFound), walks to its directory and creates it there with
// perm; then it writes data from offset 0, in pieces of at most the
// iounit, and clunks the file. It returns the first error, the File's
// own, unwrapped: a Write that accepts nothing gives plan9.ErrIO, and a
// file that commits at clunk reports its failure from Clunk. root is
// left as it was.
func WriteFile(ctx context.Context, root File, path string, data []byte, perm uint32) error {
	names := SplitPath(path)
	var iounit uint32
	f, err := WalkFile(ctx, root, names)
	switch {
	case err == nil:
		if iounit, err = f.Open(ctx, OWRITE|OTRUNC); err != nil {
			f.Clunk()
			return err
		}
	case errors.Is(err, plan9.ErrNotFound) && len(names) > 0:
		dir, err := WalkFile(ctx, root, names[:len(names)-1])
		if err != nil {
			return err
		}
		if f, iounit, err = dir.Create(ctx, names[len(names)-1], perm, OWRITE|OTRUNC); err != nil {
			dir.Clunk()
			return err
		}
		if f != dir {
			dir.Clunk()
		}
	default:
		return err
	}
	return WriteAll(ctx, f, iounit, data)
}

// WriteAll writes data to the open file f from offset 0, in pieces of
// at most iounit (fileChunk if 0), and clunks f. It returns the first
// error, a clunk's included: a file that commits at clunk reports its
// refusal there. A write that accepts nothing is plan9.ErrIO.
func WriteAll(ctx context.Context, f File, iounit uint32, data []byte) error {
	chunk := fileChunk
	if iounit != 0 {
		chunk = int(iounit)
	}
	var werr error
	for off := 0; off < len(data); {
		n, err := f.Write(ctx, data[off:min(len(data), off+chunk)], int64(off))
		off += n
		if err == nil && n == 0 {
			err = plan9.ErrIO
		}
		if err != nil {
			werr = err
			break
		}
	}
	if err := f.Clunk(); werr == nil {
		werr = err
	}
	return werr
}

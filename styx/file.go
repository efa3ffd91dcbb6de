package styx

import (
	"context"

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

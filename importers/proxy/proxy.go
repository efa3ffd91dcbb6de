// Package proxy is Cheshire's proxy importer: it makes any 9P2000 server
// reached by a dial string mountable in a namespace, by presenting the
// files of a styx client connection as styx.Files.
package proxy

import (
	"context"
	"time"

	"cheshire/styx"
)

// clunkTimeout bounds the Tclunk sent when a File is released.
const clunkTimeout = 10 * time.Second

// Attacher attaches to the server at the other end of a client connection.
type Attacher struct {
	c *styx.Client
}

// Dial connects to addr (tcp!host!port, unix!/path).
func Dial(ctx context.Context, addr string) (*Attacher, error) {
	c, err := styx.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &Attacher{c: c}, nil
}

// New wraps an established client connection.
func New(c *styx.Client) *Attacher { return &Attacher{c: c} }

// Close ends the connection.
func (a *Attacher) Close() error { return a.c.Close() }

// Attach implements styx.Attacher.
func (a *Attacher) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	f, err := a.c.Attach(ctx, nil, uname, aname)
	if err != nil {
		return nil, err
	}
	return &File{fid: f}, nil
}

// File is a remote file; it implements styx.File.
type File struct {
	fid  *styx.Fid
	gone bool // the remote fid was clunked, removed or handed on by Create
}

var _ styx.File = (*File)(nil)

// Qid implements styx.File.
func (f *File) Qid() styx.Qid { return f.fid.Qid() }

// Walk implements styx.File.
func (f *File) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, nf, err := f.fid.Walk(ctx, names...)
	if nf == nil {
		return qids, nil, err
	}
	return qids, &File{fid: nf}, nil
}

// Open implements styx.File.
func (f *File) Open(ctx context.Context, mode uint8) (uint32, error) {
	if err := f.fid.Open(ctx, mode); err != nil {
		return 0, err
	}
	return f.fid.Iounit(), nil
}

// Create implements styx.File: the remote fid becomes the new file.
func (f *File) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if err := f.fid.Create(ctx, name, perm, mode); err != nil {
		return nil, 0, err
	}
	f.gone = true
	return &File{fid: f.fid}, f.fid.Iounit(), nil
}

// Read implements styx.File with one Tread.
func (f *File) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return f.fid.ReadOnce(ctx, p, off)
}

// ReadDir implements styx.File.
func (f *File) ReadDir(ctx context.Context) ([]styx.Dir, error) { return f.fid.ReadDir(ctx) }

// Write implements styx.File.
func (f *File) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return f.fid.WriteAt(ctx, p, off)
}

// Stat implements styx.File.
func (f *File) Stat(ctx context.Context) (styx.Dir, error) { return f.fid.Stat(ctx) }

// Wstat implements styx.File.
func (f *File) Wstat(ctx context.Context, d styx.Dir) error { return f.fid.Wstat(ctx, d) }

// Remove implements styx.File; the remote fid is gone either way.
func (f *File) Remove(ctx context.Context) error {
	f.gone = true
	return f.fid.Remove(ctx)
}

// Clunk implements styx.File.
func (f *File) Clunk() error {
	if f.gone {
		return nil
	}
	f.gone = true
	ctx, cancel := context.WithTimeout(context.Background(), clunkTimeout)
	defer cancel()
	return f.fid.Clunk(ctx)
}

package remote

import (
	"context"
	"errors"
	"sync"

	"cheshire/styx"
)

// root is the root of one import. It is not tied to a connection: each
// walk from it goes to the tree attached on the connection of the moment,
// so a mount of it outlives reconnections.
type root struct {
	p     *peer
	aname string
	qid   styx.Qid

	once sync.Once
}

var _ styx.File = (*root)(nil)

// Qid implements styx.File: the qid of the remote root when Import
// reached it, else one made from the key and aname.
func (r *root) Qid() styx.Qid { return r.qid }

// Walk implements styx.File.
func (r *root) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	f, err := r.p.attached(ctx, r.aname)
	if err != nil {
		return nil, nil, err
	}
	qids, nf, err := f.Walk(ctx, names...)
	if nf == nil {
		return qids, nil, r.p.wrap(f.Client(), err)
	}
	return qids, &file{p: r.p, fid: nf}, nil
}

// clone is a fresh file for the root on the current connection.
func (r *root) clone(ctx context.Context) (styx.File, error) {
	_, f, err := r.Walk(ctx, nil)
	return f, err
}

// The root's other operations run on a clone, clunked after; the
// namespace always walks from a root before using it, so these are for
// other users of an import.

// Open implements styx.File; the root itself stays unopened.
func (r *root) Open(ctx context.Context, mode uint8) (uint32, error) {
	return 0, errors.New("remote: open a clone of the import's root, not the root")
}

// Create implements styx.File.
func (r *root) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	f, err := r.clone(ctx)
	if err != nil {
		return nil, 0, err
	}
	nf, iounit, err := f.Create(ctx, name, perm, mode)
	if err != nil {
		f.Clunk()
	}
	return nf, iounit, err
}

// Read implements styx.File.
func (r *root) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, errors.New("remote: read of an unopened import root")
}

// ReadDir implements styx.File.
func (r *root) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	return nil, errors.New("remote: read of an unopened import root")
}

// Write implements styx.File.
func (r *root) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, errors.New("remote: write to an unopened import root")
}

// Stat implements styx.File.
func (r *root) Stat(ctx context.Context) (styx.Dir, error) {
	f, err := r.clone(ctx)
	if err != nil {
		return styx.Dir{}, err
	}
	defer f.Clunk()
	return f.Stat(ctx)
}

// Wstat implements styx.File.
func (r *root) Wstat(ctx context.Context, d styx.Dir) error {
	f, err := r.clone(ctx)
	if err != nil {
		return err
	}
	defer f.Clunk()
	return f.Wstat(ctx, d)
}

// Remove implements styx.File: an import's root is not removed.
func (r *root) Remove(ctx context.Context) error {
	return errors.New("remote: the root of an import cannot be removed")
}

// Clunk implements styx.File: the import ends, and with the last import
// of its node, the connection.
func (r *root) Clunk() error {
	r.once.Do(r.p.release)
	return nil
}

// file is a remote file on one connection (its fid's client). When that
// connection is lost its operations fail with "remote node unreachable"
// and it stays that way: the node may have restarted, and the fid means
// nothing to a new connection.
type file struct {
	p    *peer
	fid  *styx.Fid
	gone bool // the remote fid was clunked, removed or handed on by Create
}

var _ styx.File = (*file)(nil)

func (f *file) err(err error) error { return f.p.wrap(f.fid.Client(), err) }

// Qid implements styx.File.
func (f *file) Qid() styx.Qid { return f.fid.Qid() }

// Walk implements styx.File.
func (f *file) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, nf, err := f.fid.Walk(ctx, names...)
	if nf == nil {
		return qids, nil, f.err(err)
	}
	return qids, &file{p: f.p, fid: nf}, nil
}

// Open implements styx.File.
func (f *file) Open(ctx context.Context, mode uint8) (uint32, error) {
	if err := f.fid.Open(ctx, mode); err != nil {
		return 0, f.err(err)
	}
	return f.fid.Iounit(), nil
}

// Create implements styx.File: the remote fid becomes the new file.
func (f *file) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	if err := f.fid.Create(ctx, name, perm, mode); err != nil {
		return nil, 0, f.err(err)
	}
	f.gone = true
	return &file{p: f.p, fid: f.fid}, f.fid.Iounit(), nil
}

// Read implements styx.File with one Tread.
func (f *file) Read(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := f.fid.ReadOnce(ctx, p, off)
	return n, f.err(err)
}

// ReadDir implements styx.File.
func (f *file) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	ds, err := f.fid.ReadDir(ctx)
	return ds, f.err(err)
}

// Write implements styx.File.
func (f *file) Write(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := f.fid.WriteAt(ctx, p, off)
	return n, f.err(err)
}

// Stat implements styx.File.
func (f *file) Stat(ctx context.Context) (styx.Dir, error) {
	d, err := f.fid.Stat(ctx)
	return d, f.err(err)
}

// Wstat implements styx.File.
func (f *file) Wstat(ctx context.Context, d styx.Dir) error { return f.err(f.fid.Wstat(ctx, d)) }

// Remove implements styx.File; the remote fid is gone either way.
func (f *file) Remove(ctx context.Context) error {
	f.gone = true
	return f.err(f.fid.Remove(ctx))
}

// Clunk implements styx.File; on a lost connection there is nothing to
// clunk.
func (f *file) Clunk() error {
	if f.gone {
		return nil
	}
	f.gone = true
	if f.fid.Client().Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clunkTimeout)
	defer cancel()
	return f.err(f.fid.Clunk(ctx))
}

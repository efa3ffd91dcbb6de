package synth

import (
	"context"
	"sync"

	"cheshire/styx"
)

// A qidSpace gives the files of a grafted server (NewMount) qid paths
// from the synth server's own counter, so that no two files the server
// serves share a qid path: a client numbering inodes by qid (FUSE,
// v9fs) would otherwise see one inode for two files.
//
// BUG: the map grows by one entry for each distinct file of the grafted
// server that is ever walked to, and is never pruned.
type qidSpace struct {
	srv *Server
	mu  sync.Mutex
	m   map[uint64]uint64 // guarded by mu: the grafted path to ours
}

func (q *qidSpace) qid(x styx.Qid) styx.Qid {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.m[x.Path]
	if !ok {
		if q.m == nil {
			q.m = make(map[uint64]uint64)
		}
		p = q.srv.nextPath()
		q.m[x.Path] = p
	}
	x.Path = p
	return x
}

// space returns d's qid space in s, making it on first use.
func (d *Dir) space(s *Server) *qidSpace {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.qids == nil || d.qids.srv != s {
		d.qids = &qidSpace{srv: s}
	}
	return d.qids
}

// mountFile is a file of a grafted server, its qids mapped.
type mountFile struct {
	styx.File
	q *qidSpace
}

var _ styx.File = mountFile{}

func (f mountFile) Qid() styx.Qid { return f.q.qid(f.File.Qid()) }

func (f mountFile) Walk(ctx context.Context, names []string) ([]styx.Qid, styx.File, error) {
	qids, nf, err := f.File.Walk(ctx, names)
	for i := range qids {
		qids[i] = f.q.qid(qids[i])
	}
	if nf != nil {
		nf = mountFile{nf, f.q}
	}
	return qids, nf, err
}

func (f mountFile) Create(ctx context.Context, name string, perm uint32, mode uint8) (styx.File, uint32, error) {
	nf, iou, err := f.File.Create(ctx, name, perm, mode)
	if nf != nil {
		nf = mountFile{nf, f.q}
	}
	return nf, iou, err
}

func (f mountFile) ReadDir(ctx context.Context) ([]styx.Dir, error) {
	ds, err := f.File.ReadDir(ctx)
	for i := range ds {
		ds[i].Qid = f.q.qid(ds[i].Qid)
	}
	return ds, err
}

func (f mountFile) Stat(ctx context.Context) (styx.Dir, error) {
	d, err := f.File.Stat(ctx)
	if err == nil {
		d.Qid = f.q.qid(d.Qid)
	}
	return d, err
}

func (f mountFile) Wstat(ctx context.Context, d styx.Dir) error {
	// The client saw our qids; the grafted server must not.
	d.Qid = styx.NullDir().Qid
	return f.File.Wstat(ctx, d)
}

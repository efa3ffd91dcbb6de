// Tremove, Tstat and Twstat, with the check of wstat's fixed fields.

package styx

import (
	"context"
	"errors"

	"cheshire/plan9"
)

func (c *conn) remove(r *req) {
	f := c.drop(r.fc.Fid)
	if f == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	f.mu.Lock()
	file := f.file
	f.mu.Unlock()
	var err error
	if file == nil {
		err = plan9.ErrUnknownFid
	} else {
		err = file.Remove(r.ctx)
		if err == nil {
			f.mu.Lock()
			f.removed = true
			f.mu.Unlock()
		}
	}
	f.decref()
	if err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rremove})
}

func (c *conn) stat(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	file, _, _ := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	d, err := file.Stat(r.ctx)
	if err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rstat, Stat: d.Bytes()})
}

func (c *conn) wstat(r *req) {
	f, err := c.lookup(r.fc.Fid)
	if err != nil {
		r.error(err)
		return
	}
	r.hold(f)
	d, err := UnmarshalDir(r.fc.Stat)
	if err != nil {
		r.error(errors.New("bad stat in wstat: " + err.Error()))
		return
	}
	file, _, _ := f.get()
	if file == nil {
		r.error(plan9.ErrUnknownFid)
		return
	}
	if d.Name != "" && (d.Name == "." || d.Name == ".." || containsSlash(d.Name)) {
		r.error(plan9.ErrBadName)
		return
	}
	if err := checkFixed(r.ctx, file, &d); err != nil {
		r.error(err)
		return
	}
	if err := file.Wstat(r.ctx, d); err != nil {
		r.error(err)
		return
	}
	r.respond(&Fcall{Type: Rwstat})
}

// checkFixed checks that d, the entry of a Twstat of file, leaves alone
// what no wstat may change. Type, dev and each part of the qid must be
// "don't touch" (~0) or equal the file's, else plan9.ErrWstat; a mode
// other than ~0 must keep the DMDIR bit of the file's qid type, else
// plan9.ErrConvert. The file's Stat is called only when d names a type,
// dev or qid.
func checkFixed(ctx context.Context, file File, d *Dir) error {
	if d.Mode != ^uint32(0) && (d.Mode&DMDIR != 0) != (file.Qid().Type&QTDIR != 0) {
		return plan9.ErrConvert
	}
	null := NullDir()
	if d.Type == null.Type && d.Dev == null.Dev && d.Qid == null.Qid {
		return nil
	}
	cur, err := file.Stat(ctx)
	if err != nil {
		return err
	}
	if d.Type != null.Type && d.Type != cur.Type ||
		d.Dev != null.Dev && d.Dev != cur.Dev ||
		d.Qid.Type != null.Qid.Type && d.Qid.Type != cur.Qid.Type ||
		d.Qid.Vers != null.Qid.Vers && d.Qid.Vers != cur.Qid.Vers ||
		d.Qid.Path != null.Qid.Path && d.Qid.Path != cur.Qid.Path {
		return plan9.ErrWstat
	}
	return nil
}

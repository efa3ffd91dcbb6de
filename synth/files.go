package synth

import (
	"bytes"
	"context"
	"hash/crc32"
	"sync"

	"cheshire/plan9"
	"cheshire/styx"
)

// MaxReadWrite is the most a ReadWrite file holds for one fid; a write
// beyond it fails with "file too big".
const MaxReadWrite = 16 << 20

// readAt copies data from off into p.
func readAt(data, p []byte, off int64) int {
	if off >= int64(len(data)) {
		return 0
	}
	return copy(p, data[off:])
}

// snapshot is the Handle of a read-only open: it serves one copy of the
// content, taken at open.
type snapshot []byte

func (s snapshot) Read(ctx context.Context, p []byte, off int64) (int, error) {
	return readAt(s, p, off), nil
}

func (s snapshot) Write(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, plan9.ErrWrite
}

func (s snapshot) Close(ctx context.Context) error { return nil }

// Contents returns the Handle of a read-only open whose content, data,
// the Handler has already taken (data is not copied; it must not change):
// for a Handler that serves some opens from memory and others otherwise.
func Contents(data []byte) Handle { return snapshot(data) }

// snapshotHandler serves the content get gives at each open.
type snapshotHandler struct {
	get func(ctx context.Context) ([]byte, error)
}

func (h snapshotHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	if writeMode(mode) || mode&styx.OTRUNC != 0 {
		return nil, plan9.ErrPerm
	}
	data, err := h.get(ctx)
	if err != nil {
		return nil, err
	}
	return snapshot(data), nil
}

func (h snapshotHandler) Length(ctx context.Context) int64 {
	data, err := h.get(ctx)
	if err != nil {
		return 0
	}
	return int64(len(data))
}

// contentStat gives the length and, as version, a hash of the content,
// so that a client caching by qid version sees a change that kept the
// length.
func (h snapshotHandler) contentStat(ctx context.Context) (int64, uint32) {
	data, err := h.get(ctx)
	if err != nil {
		return 0, 0
	}
	return int64(len(data)), crc32.ChecksumIEEE(data)
}

// Static returns a read-only file of constant content (a copy of data).
func Static(name string, perm uint32, data []byte) *File {
	data = bytes.Clone(data)
	return Snapshot(name, perm, func(context.Context) ([]byte, error) { return data, nil })
}

// String returns a read-only file whose content is get's text, taken once
// at each open and kept with the fid, so that a reader crossing several
// reads sees one version. Its stat length is that of get's text at stat.
func String(name string, perm uint32, get func(ctx context.Context) string) *File {
	return Snapshot(name, perm, func(ctx context.Context) ([]byte, error) { return []byte(get(ctx)), nil })
}

// Snapshot is String for content that may fail: get's error is the reply
// to the open. get must not keep or change the slice it returns afterwards.
func Snapshot(name string, perm uint32, get func(ctx context.Context) ([]byte, error)) *File {
	return NewFile(name, perm, snapshotHandler{get: get})
}

// ReadWrite returns a file whose content is get's and is changed by set.
// Each fid reads and writes its own copy: from empty if opened with OTRUNC,
// else from get at open. If the fid was written (or opened with OTRUNC),
// set is called once at clunk with the whole content; its error is the
// reply to the clunk and then nothing changes, so a half-written file is
// never applied. A copy holds at most MaxReadWrite bytes.
//
// Truncation by wstat (as Linux does after opening with O_TRUNC) cuts the
// copies of the fids open for writing, to be committed at their clunk; with
// none open, set is called at once with get's content cut or padded.
func ReadWrite(name string, perm uint32, get func(ctx context.Context) ([]byte, error), set func(ctx context.Context, data []byte) error) *File {
	return NewFile(name, perm, &rwHandler{get: get, set: set, open: make(map[*rwHandle]struct{})})
}

// CheckedReadWrite is ReadWrite whose writes are judged as they arrive:
// after each write, check is called (with no lock held) on the fid's
// copy cut after its last newline, and a refusal fails that write, so
// that `echo line > file` in a shell sees it (shells ignore the error of
// close(2), where ReadWrite's set refuses). check returns nil for a text
// that may yet become acceptable (a setting still missing). A fid whose
// write was refused fails every later write and applies nothing at
// clunk, returning the same error; otherwise set judges the whole text
// at clunk as in ReadWrite.
func CheckedReadWrite(name string, perm uint32, get func(ctx context.Context) ([]byte, error), set func(ctx context.Context, data []byte) error, check func(ctx context.Context, text string) error) *File {
	return NewFile(name, perm, &rwHandler{get: get, set: set, check: check, open: make(map[*rwHandle]struct{})})
}

type rwHandler struct {
	get   func(ctx context.Context) ([]byte, error)
	set   func(ctx context.Context, data []byte) error
	check func(ctx context.Context, text string) error // CheckedReadWrite's, or nil

	mu   sync.Mutex
	open map[*rwHandle]struct{} // guarded by mu: fids open for writing
}

// rwHandle is one open of a ReadWrite file.
type rwHandle struct {
	h     *rwHandler
	write bool // open for writing: registered in h.open

	wmu     sync.Mutex // serialises writes of a checked file, so each check sees its own
	refused error      // guarded by wmu: the first write check refused

	mu    sync.Mutex
	data  []byte // guarded by mu: this fid's copy
	dirty bool   // guarded by mu: set must be called at clunk
}

func (h *rwHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	hd := &rwHandle{h: h, write: writeMode(mode) || mode&styx.OTRUNC != 0}
	if mode&styx.OTRUNC != 0 {
		hd.dirty = true
	} else {
		data, err := h.get(ctx)
		if err != nil {
			return nil, err
		}
		hd.data = bytes.Clone(data)
	}
	if hd.write {
		h.mu.Lock()
		h.open[hd] = struct{}{}
		h.mu.Unlock()
	}
	return hd, nil
}

func (h *rwHandler) Length(ctx context.Context) int64 {
	data, err := h.get(ctx)
	if err != nil {
		return 0
	}
	return int64(len(data))
}

func (h *rwHandler) Truncate(ctx context.Context, size int64) error {
	if size > MaxReadWrite {
		return plan9.ErrTooBig
	}
	h.mu.Lock()
	open := make([]*rwHandle, 0, len(h.open))
	for hd := range h.open {
		open = append(open, hd)
	}
	h.mu.Unlock()
	if len(open) > 0 {
		for _, hd := range open {
			hd.mu.Lock()
			hd.data = resize(hd.data, size)
			hd.dirty = true
			hd.mu.Unlock()
		}
		return nil
	}
	data, err := h.get(ctx)
	if err != nil {
		return err
	}
	if int64(len(data)) == size {
		return nil
	}
	return h.set(ctx, resize(bytes.Clone(data), size))
}

// resize cuts data to size or pads it with zeros.
func resize(data []byte, size int64) []byte {
	if int64(len(data)) >= size {
		return data[:size]
	}
	return append(data, make([]byte, size-int64(len(data)))...)
}

func (hd *rwHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return readAt(hd.data, p, off), nil
}

func (hd *rwHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if hd.h.check == nil {
		return hd.write1(p, off)
	}
	hd.wmu.Lock()
	defer hd.wmu.Unlock()
	if hd.refused != nil {
		return 0, hd.refused
	}
	n, err := hd.write1(p, off)
	if err != nil {
		return n, err
	}
	hd.mu.Lock()
	text := hd.data[:bytes.LastIndexByte(hd.data, '\n')+1]
	text = bytes.Clone(text)
	hd.mu.Unlock()
	if len(text) == 0 {
		return n, nil
	}
	if err := hd.h.check(ctx, string(text)); err != nil {
		hd.refused = err
		return 0, err
	}
	return n, nil
}

// write1 puts p at off in the fid's copy.
func (hd *rwHandle) write1(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if end > MaxReadWrite || end < off {
		return 0, plan9.ErrTooBig
	}
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if end > int64(len(hd.data)) {
		hd.data = resize(hd.data, end)
	}
	copy(hd.data[off:], p)
	hd.dirty = true
	return len(p), nil
}

func (hd *rwHandle) Close(ctx context.Context) error {
	if hd.write {
		hd.h.mu.Lock()
		delete(hd.h.open, hd)
		hd.h.mu.Unlock()
	}
	hd.wmu.Lock()
	refused := hd.refused
	hd.wmu.Unlock()
	hd.mu.Lock()
	data, dirty := hd.data, hd.dirty
	hd.data = nil
	hd.mu.Unlock()
	if refused != nil {
		return refused
	}
	if !dirty {
		return nil
	}
	if data == nil {
		data = []byte{}
	}
	return hd.h.set(ctx, data)
}

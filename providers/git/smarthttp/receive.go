package smarthttp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
)

// command is one reference update of a push, and its outcome: "" until
// decided, then "ok" or the reason it was refused.
type command struct {
	name     plumbing.ReferenceName
	old, new plumbing.Hash
	status   string
}

// The reasons a command is refused, as the git client prints them
// ("! [remote rejected] main -> main (stale info)").
const (
	whyUnpack = "unpacker error"
	whyAtomic = "atomic push failed"
	whyStale  = "stale info"
)

// readCommands reads the command list of a push and the capabilities
// on its first line. Its size is bounded by MaxRequest.
func (x *exchange) readCommands() ([]*command, map[string]bool, error) {
	var cmds []*command
	caps := map[string]bool{}
	seen := map[plumbing.ReferenceName]bool{}
	size := int64(0)
	for {
		line, flush, err := x.body.next()
		if err != nil {
			return nil, nil, truncated(err)
		}
		if flush {
			return cmds, caps, nil
		}
		if size += int64(len(line)); size > x.h.o.MaxRequest {
			return nil, nil, errTooBig
		}
		text := string(trimLF(line))
		if len(cmds) == 0 {
			var capList string
			text, capList, _ = strings.Cut(text, "\x00")
			for _, c := range strings.Fields(capList) {
				caps[c] = true
			}
		}
		// OLD NEW NAME; NAME is the rest of the line, spaces and all.
		f := strings.SplitN(text, " ", 3)
		if len(f) != 3 || strings.ContainsAny(f[2], "\n\x00") {
			return nil, nil, badLine(text)
		}
		old, ok1 := parseHash(f[0])
		new, ok2 := parseHash(f[1])
		name := plumbing.ReferenceName(f[2])
		if !ok1 || !ok2 {
			return nil, nil, badLine(text)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("git: %s: more than one command for it", name)
		}
		seen[name] = true
		c := &command{name: name, old: old, new: new}
		if funnyRef(f[2]) || !name.IsSafe() {
			c.status = whyFunny // refused, as the push with it
		}
		cmds = append(cmds, c)
	}
}

// receivePack applies a push (git-receive-pack): it reads the commands
// and the pack, stores the pack's objects, then, holding the
// repository's lock, checks every command's old hash against the
// reference and sets all the references or none.
func (x *exchange) receivePack() error {
	cmds, caps, err := x.readCommands()
	if err != nil {
		return err
	}
	if len(cmds) == 0 { // the probe git sends before a large push
		x.start(svcReceive)
		return nil
	}
	var s *streamer
	if x.h.o.Stream != nil {
		if l := x.h.o.Stream(x.name); l != nil {
			s = newStreamer(x.repo.Storer, l)
			defer l.Done()
			for _, c := range cmds {
				if c.status == "" {
					s.command(c.old, c.new)
				}
			}
		}
	}
	var unpackErr error
	for _, c := range cmds {
		if !c.new.IsZero() {
			unpackErr = x.unpack(s)
			break
		}
	}
	if s != nil && unpackErr == nil {
		s.finish()
	}
	updates := x.update(cmds, unpackErr)
	if s != nil {
		for _, c := range cmds {
			why := c.status
			if why == "ok" {
				why = ""
			}
			s.l.Ref(c.name, c.old, c.new, why)
		}
	}
	if len(updates) > 0 {
		x.h.o.Log.Info("git: push", "repo", x.name, "user", x.user, "updates", len(updates))
		if x.h.o.Updated != nil {
			x.h.o.Updated(x.name, updates)
		}
	} else if unpackErr != nil {
		x.h.o.Log.Info("git: push", "repo", x.name, "user", x.user, "err", unpackErr)
	}
	x.start(svcReceive)
	if !caps["report-status"] {
		return nil
	}
	var rep bytes.Buffer
	if unpackErr != nil {
		pktf(&rep, "unpack %s\n", oneLine(errText(unpackErr)))
	} else {
		pktf(&rep, "unpack ok\n")
	}
	for _, c := range cmds {
		if c.status == "ok" {
			pktf(&rep, "ok %s\n", c.name)
		} else {
			pktf(&rep, "ng %s %s\n", c.name, oneLine(c.status))
		}
	}
	flushPkt(&rep)
	bw := bufio.NewWriter(x.w)
	if caps["side-band-64k"] {
		sideband.NewMuxer(sideband.Sideband64k, bw).Write(rep.Bytes())
		flushPkt(bw)
	} else {
		bw.Write(rep.Bytes())
	}
	return bw.Flush()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// unpack spools the pack that follows the commands to a temporary file
// (so a huge pack costs disk, bounded by MaxPack, not memory) while
// checkPack reads it as it arrives (refusing a pack bomb before it is
// all in, and handing s its trees), checks it with go-git's parser,
// and only then stores it in the repository, so that a truncated or
// corrupt pack leaves nothing behind.
func (x *exchange) unpack(s *streamer) error {
	f, err := os.CreateTemp(x.h.o.TempDir, "cheshire-push-*.pack")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		err := checkPack(pr, x.h.o.MaxObject, x.h.o.MaxInflated, s)
		if err != nil {
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr) // whatever follows the pack
		}
		checked <- err
	}()
	n, err := io.Copy(f, io.TeeReader(x.body.r, pw))
	pw.CloseWithError(err)
	checkErr := <-checked
	switch {
	case errors.Is(err, errTooBig):
		return errTooBig
	case n == 0 && err == nil:
		return errors.New("git: no pack")
	case checkErr != nil:
		return checkErr
	case err != nil:
		return fmt.Errorf("git: reading pack: %w", err)
	}
	var hdr [12]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:4]) != "PACK" {
		return errors.New("git: bad pack: no header")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	p, err := packfile.NewParser(packfile.NewScanner(f))
	if err != nil {
		return fmt.Errorf("git: bad pack: %w", err)
	}
	if _, err := p.Parse(); err != nil {
		return fmt.Errorf("git: bad pack: %w", err)
	}
	if binary.BigEndian.Uint32(hdr[8:]) == 0 {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := packfile.UpdateObjectStorage(x.repo.Storer, f); err != nil {
		return fmt.Errorf("git: storing pack: %w", err)
	}
	return nil
}

// update checks the commands against the references, asks Receive,
// if set, and applies all of them or none, setting each command's
// status. It returns the updates applied.
func (x *exchange) update(cmds []*command, unpackErr error) []RefUpdate {
	if unpackErr != nil {
		for _, c := range cmds {
			c.status = whyUnpack
		}
		return nil
	}
	mu := x.h.lock(x.name)
	mu.Lock()
	defer mu.Unlock()
	s := x.repo.Storer
	failed := false
	for _, c := range cmds {
		if c.status != "" { // refused as it was read
			failed = true
			continue
		}
		cur, err := s.Reference(c.name)
		switch {
		case errors.Is(err, plumbing.ErrReferenceNotFound):
			cur = nil
		case err != nil:
			c.status, failed = oneLine(err.Error()), true
			continue
		case cur.Type() != plumbing.HashReference:
			c.status, failed = "symbolic reference", true
			continue
		}
		old := plumbing.ZeroHash
		if cur != nil {
			old = cur.Hash()
		}
		if old != c.old {
			c.status, failed = whyStale, true
			continue
		}
		if c.new.IsZero() {
			continue
		}
		o, err := s.EncodedObject(plumbing.AnyObject, c.new)
		switch {
		case err != nil:
			c.status, failed = "missing object", true
		case c.name.IsBranch() && o.Type() != plumbing.CommitObject:
			c.status, failed = "not a commit", true
		}
	}
	if !failed && x.h.o.Receive != nil {
		pending := make([]RefUpdate, len(cmds))
		for i, c := range cmds {
			pending[i] = RefUpdate{Name: c.name, Old: c.old, New: c.new}
		}
		if err := x.h.o.Receive(x.ctx, x.name, x.repo, pending); err != nil {
			why := oneLine(errText(err))
			for _, c := range cmds {
				c.status = why
			}
			failed = true
		}
	}
	if !failed {
		for i, c := range cmds {
			if err := setRef(s, c.name, c.new); err != nil {
				c.status, failed = oneLine(err.Error()), true
				for _, d := range cmds[:i] { // roll back
					setRef(s, d.name, d.old)
				}
				break
			}
		}
	}
	var updates []RefUpdate
	for _, c := range cmds {
		switch {
		case failed && c.status == "":
			c.status = whyAtomic
		case !failed:
			c.status = "ok"
			updates = append(updates, RefUpdate{Name: c.name, Old: c.old, New: c.new})
		}
	}
	return updates
}

// setRef points reference name at h, or removes it if h is zero.
func setRef(s interface {
	SetReference(*plumbing.Reference) error
	RemoveReference(plumbing.ReferenceName) error
}, name plumbing.ReferenceName, h plumbing.Hash) error {
	if h.IsZero() {
		return s.RemoveReference(name)
	}
	return s.SetReference(plumbing.NewHashReference(name, h))
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cheshire/plan9"
)

// verifyPaths reads every piece of every fragment of the files at paths
// and checks it against the signed list; the error names each fragment
// that is missing or corrupt and its holder (who is also counted, and
// named in health).
func (s *Store) verifyPaths(ctx context.Context, paths []string) error {
	var errs []string
	for _, p := range paths {
		if err := s.verify(ctx, p); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("store: bad fragments: %s", cut(strings.Join(errs, "; "), 400))
	}
	return nil
}

func (s *Store) capOf(p string) (Cap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.files[p]
	if e == nil || e.pending {
		return Cap{}, fmt.Errorf("store: %s: %w", p, plan9.ErrNotFound)
	}
	return e.cap, nil
}

func (s *Store) verify(ctx context.Context, p string) error {
	c, err := s.capOf(p)
	if err != nil {
		return err
	}
	return s.VerifyCap(ctx, c.Verify())
}

// VerifyCap checks every piece of the file of c (any kind of cap).
func (s *Store) VerifyCap(ctx context.Context, c Cap) error {
	l, err := s.findList(ctx, c)
	if err != nil {
		return err
	}
	f, err := s.newFetcher(l, nil)
	if err != nil {
		return err
	}
	defer f.close()
	var bad []string
	for i := range l.Frags {
		p := make([]byte, l.Shard)
		for st := range l.Stripes() {
			if err := f.piece(ctx, i, st, p); err != nil {
				bad = append(bad, fmt.Sprintf("fragment %d at %s: %v", i, short(l.Holders[i]), errors.Unwrap(err)))
				break
			}
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// repairPaths repairs the files at paths.
func (s *Store) repairPaths(ctx context.Context, paths []string) error {
	var errs []string
	for _, p := range paths {
		c, err := s.capOf(p)
		if err == nil {
			_, err = s.RepairCap(ctx, c.Verify(), 0)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("store: repair: %s", cut(strings.Join(errs, "; "), 400))
	}
	return nil
}

// RepairCap rebuilds the fragments of the file of c that are missing or
// corrupt at their holders, onto other holders, and tells every holder
// the new places; a verify cap is enough. rate, if positive, bounds the
// bytes a second it rebuilds. It returns how many fragments it rebuilt.
func (s *Store) RepairCap(ctx context.Context, c Cap, rate int) (int, error) {
	l, err := s.findList(ctx, c)
	if err != nil {
		return 0, err
	}
	want := int64(l.Stripes()) * int64(l.Shard)
	var missing []int
	avoid := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, fr := range l.Frags {
		k := l.Holders[i]
		s.mu.Lock()
		bad := k != "" && s.badFrags[fr.Name] == k
		s.mu.Unlock()
		if bad || k == "" {
			mu.Lock()
			missing = append(missing, i)
			avoid[k] = true
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			if n, err := s.holder(k).Size(cctx, l.ref(i)); err != nil || n != want {
				mu.Lock()
				missing = append(missing, i)
				avoid[k] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(missing) == 0 {
		return 0, nil
	}
	if len(l.Frags)-len(missing) < l.K {
		return 0, fmt.Errorf("store: too few fragments to rebuild: %d of %d, want %d", len(l.Frags)-len(missing), len(l.Frags), l.K)
	}
	done, err := s.rebuild(ctx, l, missing, avoid, rate)
	if err != nil {
		return 0, err
	}
	s.spreadList(ctx, l)
	if done < len(missing) {
		return done, fmt.Errorf("store: only %d of %d fragments rebuilt: no holder acknowledged the rest", done, len(missing))
	}
	return done, nil
}

// rebuild rebuilds the fragments missing of l from k others, at
// holders placed anew (not those of avoid), at most rate bytes a second
// if rate is positive; l.Holders names the holders of those it stored,
// which it counts.
func (s *Store) rebuild(ctx context.Context, l *List, missing []int, avoid map[string]bool, rate int) (int, error) {
	f, err := s.newFetcher(l, nil)
	if err != nil {
		return 0, err
	}
	defer f.close()
	for _, i := range missing {
		f.dead[i] = errors.New("store: fragment is busy: being rebuilt")
	}
	keys, ws, err := s.place(ctx, l, missing, avoid)
	if err != nil {
		return 0, err
	}
	abort := func() {
		for _, i := range missing {
			ws[i].Abort()
		}
	}
	lost := make(map[int]bool) // refused part way: the others go on
	for st := range l.Stripes() {
		shards, err := f.stripe(ctx, st, l.K)
		if err == nil {
			err = f.c.rebuild(shards, false)
		}
		if err != nil {
			abort()
			return 0, err
		}
		for _, i := range missing {
			if l.sum(shards[i]) != l.Frags[i].Hashes[st] {
				abort()
				return 0, fmt.Errorf("store: rebuilt fragment %d does not match its hash", i)
			}
			if lost[i] {
				continue
			}
			if err := ws[i].WriteAt(ctx, shards[i], int64(st)*int64(l.Shard)); err != nil {
				ws[i].Abort()
				s.noteFail(keys[i], err)
				lost[i] = true
				if len(lost) == len(missing) {
					return 0, err
				}
			}
		}
		if rate > 0 {
			d := time.Duration(int64(len(missing)*l.Shard) * int64(time.Second) / int64(rate))
			select {
			case <-time.After(d):
			case <-ctx.Done():
				abort()
				return 0, ctx.Err()
			}
		}
	}
	done := 0
	for _, i := range missing {
		if lost[i] {
			continue
		}
		if err := ws[i].Commit(); err != nil {
			s.noteFail(keys[i], err)
			continue
		}
		s.noteOK(keys[i])
		l.Holders[i] = keys[i]
		done++
	}
	s.mu.Lock()
	for _, i := range missing {
		if l.Holders[i] == keys[i] {
			delete(s.badFrags, l.Frags[i].Name)
		}
	}
	s.mu.Unlock()
	return done, nil
}

// spreadList gives l (its hints changed) to its holders and this node.
func (s *Store) spreadList(ctx context.Context, l *List) {
	data := l.Marshal()
	name := (Cap{Pub: l.Pub}).IDHex() + ".list"
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for _, k := range append([]string{s.opts.Self}, l.Holders...) {
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			if err := s.holder(k).PutList(cctx, name, data); err != nil {
				s.noteFail(k, err)
			}
		}()
	}
	wg.Wait()
}

// repairer looks at every file every RepairEvery and repairs those that
// lost fragments, at RepairRate.
func (s *Store) repairer() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RepairEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.pathsUnder("/", nil) {
			h := s.health(s.ctx, p)
			if h.err != nil || h.state() != "degraded" {
				continue
			}
			c, err := s.capOf(p)
			if err != nil {
				continue
			}
			if n, err := s.RepairCap(s.ctx, c.Verify(), s.opts.RepairRate); err != nil {
				s.log.Warn("store: repair", "file", p, "err", err)
			} else if n > 0 {
				s.log.Info("store: repaired", "file", p, "fragments", n)
			}
		}
	}
}

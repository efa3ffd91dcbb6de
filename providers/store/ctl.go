package store

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/synth"
)

// cmds is the command table of the ctl file of directory dir.
func (s *Store) cmds(dir string) []synth.Cmd {
	return []synth.Cmd{
		{Name: "policy", Min: 2, Max: 3, Usage: "policy k=K m=M [happy=H]",
			Run: func(ctx context.Context, args []string) error { return s.setPolicy(dir, args) }},
		{Name: "repair", Min: 0, Max: 1, Usage: "repair [PATH]",
			Run: func(ctx context.Context, args []string) error {
				return s.repairPaths(ctx, s.pathsUnder(dir, args))
			}},
		{Name: "verify", Min: 1, Max: 1, Usage: "verify PATH",
			Run: func(ctx context.Context, args []string) error {
				return s.verifyPaths(ctx, s.pathsUnder(dir, args))
			}},
		{Name: "holders add", Min: 1, Max: 1, Usage: "holders add KEY",
			Run: func(ctx context.Context, args []string) error { return s.addHolder(args[0]) }},
		{Name: "holders rm", Min: 1, Max: 1, Usage: "holders rm KEY",
			Run: func(ctx context.Context, args []string) error { return s.rmHolder(args[0]) }},
		{Name: "holders discover", Min: 1, Max: 1, Usage: "holders discover on|off",
			Run: func(ctx context.Context, args []string) error { return s.setDiscover(args[0]) }},
		{Name: "offer", Min: 1, Max: 3, Usage: "offer SIZE [per-key SIZE] | offer off",
			Run: func(ctx context.Context, args []string) error { return s.setOffer(args) }},
		{Name: "import-cap", Min: 2, Max: 2, Usage: "import-cap CAP PATH", Secret: true,
			Run: func(ctx context.Context, args []string) error {
				c, err := ParseCap(args[0])
				if err != nil {
					return err
				}
				return s.addFile(ctx, resolve(dir, args[1]), c)
			}},
	}
}

// resolve is p relative to directory dir; an absolute p is from /store.
func resolve(dir, p string) string {
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

// pathsUnder are the files args names (all under dir when none).
func (s *Store) pathsUnder(dir string, args []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if len(args) == 1 {
		p := resolve(dir, args[0])
		if _, ok := s.files[p]; ok {
			return []string{p}
		}
		if _, ok := s.dirs[p]; !ok {
			return []string{p} // reported as not found
		}
		dir = p
	}
	for p, e := range s.files {
		if !e.pending && (dir == "/" || strings.HasPrefix(p, dir+"/")) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Store) setPolicy(dir string, args []string) error {
	s.mu.Lock()
	p := s.policyOfLocked(dir)
	s.mu.Unlock()
	happySet := false
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return fmt.Errorf("store: bad policy argument %q: want k=N, m=N or happy=N", a)
		}
		switch k {
		case "k":
			p.K = n
		case "m":
			p.M = n
		case "happy":
			p.Happy, happySet = n, true
		default:
			return fmt.Errorf("store: bad policy argument %q: want k=N, m=N or happy=N", a)
		}
	}
	if !happySet {
		p.Happy = p.K + p.M
	}
	if err := checkPolicy(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.dirs[dir] = &p
	s.mu.Unlock()
	return s.save()
}

func (s *Store) addHolder(key string) error {
	if _, err := nodekey.Decode(key); err != nil {
		return fmt.Errorf("store: bad key: %w", err)
	}
	s.mu.Lock()
	if slices.Contains(s.holders, key) {
		s.mu.Unlock()
		return nil
	}
	s.holders = append(s.holders, key)
	s.mu.Unlock()
	return s.save()
}

func (s *Store) rmHolder(key string) error {
	s.mu.Lock()
	i := slices.Index(s.holders, key)
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("store: no holder %s: %w", short(key), plan9.ErrNotFound)
	}
	s.holders = slices.Delete(s.holders, i, i+1)
	s.mu.Unlock()
	return s.save()
}

// checkTimeout bounds the look at one fragment for health.
const checkTimeout = 5 * time.Second

// A fileHealth is what health says of one file.
type fileHealth struct {
	path              string
	k, m              int
	placed, reachable int
	acks              int
	ackHolders        int      // distinct holders among the acks
	bad               []string // holders of fragments that gave corrupt pieces
	down              []int    // fragments not reachable
	err               error
}

func (h fileHealth) state() string {
	switch {
	case h.err != nil:
		return "unknown"
	case h.reachable == h.k+h.m && len(h.bad) == 0:
		return "healthy"
	case h.reachable >= h.k:
		return "degraded"
	}
	return "unreadable"
}

// health looks at every fragment of the file at p.
func (s *Store) health(ctx context.Context, p string) fileHealth {
	s.mu.Lock()
	e := s.files[p]
	s.mu.Unlock()
	h := fileHealth{path: p}
	if e == nil {
		h.err = plan9.ErrNotFound
		return h
	}
	h.acks, h.ackHolders = e.acks, e.holders
	l, err := s.findList(ctx, e.cap)
	if err != nil {
		h.err = err
		return h
	}
	h.k, h.m = l.K, l.M
	want := int64(l.Stripes()) * int64(l.Shard)
	ok := make([]bool, len(l.Frags))
	var wg sync.WaitGroup
	for i := range l.Frags {
		k := l.Holders[i]
		if k == "" {
			continue
		}
		h.placed++
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			n, err := s.holder(k).Size(cctx, l.ref(i))
			ok[i] = err == nil && n == want
		}()
	}
	wg.Wait()
	s.mu.Lock()
	for i, fr := range l.Frags {
		if b := s.badFrags[fr.Name]; b != "" && b == l.Holders[i] {
			h.bad = append(h.bad, b)
			ok[i] = false
		}
	}
	s.mu.Unlock()
	for i := range ok {
		if ok[i] {
			h.reachable++
		} else {
			h.down = append(h.down, i)
		}
	}
	return h
}

// healthText is /store/health: a line a file.
func (s *Store) healthText(ctx context.Context) string {
	paths := s.pathsUnder("/", nil)
	hs := make([]fileHealth, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func() { defer wg.Done(); hs[i] = s.health(ctx, p) }()
	}
	wg.Wait()
	var b strings.Builder
	for _, h := range hs {
		readable := "no"
		if h.err == nil && h.reachable >= h.k {
			readable = "yes"
		}
		fmt.Fprintf(&b, "%s k %d m %d placed %d reachable %d acks %d readable %s %s holders %d", h.path, h.k, h.m,
			h.placed, h.reachable, h.acks, readable, h.state(), h.ackHolders)
		for _, k := range h.bad {
			fmt.Fprintf(&b, " bad %s", k)
		}
		if h.err != nil {
			fmt.Fprintf(&b, " err %q", cut(h.err.Error(), 100))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// statusText is /store/status.
func (s *Store) statusText(ctx context.Context) string {
	var b strings.Builder
	held, n := s.disk.usage()
	fmt.Fprintf(&b, "self %s\nheld %d fragments %d\n", s.opts.Self, held, n)
	s.mu.Lock()
	var stored int64
	for _, e := range s.files {
		if e.cap.CanWrite() && !e.pending && e.k > 0 {
			stored += e.size * int64(e.k+e.m) / int64(e.k)
		}
	}
	fmt.Fprintf(&b, "stored %d\n", stored)
	s.mu.Unlock()
	s.offerText(&b)
	s.discoveredText(&b)
	for _, k := range s.holderKeys() {
		s.mu.Lock()
		state, why := "up", s.lastFail[k]
		if why != "" {
			state = "down"
		}
		bad := s.bad[k]
		s.mu.Unlock()
		fmt.Fprintf(&b, "holder %s %s bad %d", k, state, bad)
		if why != "" {
			fmt.Fprintf(&b, " err %q", cut(why, 100))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

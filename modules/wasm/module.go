package wasm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cheshire/module"
)

// Defaults and bounds of the configuration.
const (
	DefaultMemory = 256 << 20
	MaxMemory     = 4 << 30
	MinMemory     = 1 << 20
	DefaultCPU    = time.Second
	MaxCPU        = 10 * time.Minute

	pageSize = 64 << 10 // a WebAssembly page
)

// A Module is a loaded package: its manifest and compiled code. It
// implements module.Module.
type Module struct {
	rt       *Runtime
	manifest module.Manifest
	wasm     []byte
}

var _ module.Module = (*Module)(nil)

// Manifest implements module.Module.
func (m *Module) Manifest() module.Manifest { return m.manifest }

// CheckConfig implements module.Module: it accepts allow, memory and cpu
// lines.
func (m *Module) CheckConfig(cfg module.Config) error {
	_, err := parseConfig(cfg)
	return err
}

// config is a parsed configuration.
type config struct {
	allow  []module.Perm
	memory uint64
	cpu    time.Duration
}

func parseConfig(cfg module.Config) (config, error) {
	c := config{memory: DefaultMemory, cpu: DefaultCPU}
	for _, e := range cfg.Entries {
		switch e.Key {
		case "allow":
			p, err := module.ParsePerm(e.Args)
			if err != nil {
				return config{}, e.Errorf("%v", err)
			}
			c.allow = append(c.allow, p)
		case "memory":
			if len(e.Args) != 1 {
				return config{}, e.Errorf("want memory SIZE (as 64M)")
			}
			n, err := parseSize(e.Args[0])
			if err != nil {
				return config{}, e.Errorf("%v", err)
			}
			if n < MinMemory || n > MaxMemory {
				return config{}, e.Errorf("memory %s: want 1M to 4G", e.Args[0])
			}
			c.memory = n
		case "cpu":
			if len(e.Args) != 1 {
				return config{}, e.Errorf("want cpu DURATION (as 500ms)")
			}
			d, err := time.ParseDuration(e.Args[0])
			if err != nil {
				return config{}, e.Errorf("%v", err)
			}
			if d <= 0 || d > MaxCPU {
				return config{}, e.Errorf("cpu %s: want more than 0 and at most %v", e.Args[0], MaxCPU)
			}
			c.cpu = d
		default:
			return config{}, e.Errorf("unknown key %q (want allow, memory or cpu)", e.Key)
		}
	}
	return c, nil
}

// parseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024), rounded up to whole WebAssembly pages.
func parseSize(s string) (uint64, error) {
	num, mult := s, uint64(1)
	if num != "" {
		switch strings.ToUpper(num[len(num)-1:]) {
		case "K":
			mult = 1 << 10
		case "M":
			mult = 1 << 20
		case "G":
			mult = 1 << 30
		}
		if mult != 1 {
			num = num[:len(num)-1]
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > MaxMemory/mult+1 {
		return 0, fmt.Errorf("bad size %q (want bytes, or a number with K, M or G)", s)
	}
	n *= mult
	return (n + pageSize - 1) / pageSize * pageSize, nil
}

// grant returns what the node grants a module: each permission the
// manifest requests intersected with each the owner allows. Of two path
// permissions on prefix-related paths it keeps the longer path, and read
// unless both are write; of two http permissions the narrower.
func grant(requires, allow []module.Perm) []module.Perm {
	var out []module.Perm
	for _, r := range requires {
		for _, a := range allow {
			if g, ok := intersect(r, a); ok && !hasPerm(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

func isPath(k string) bool { return k == "read" || k == "write" }

func intersect(a, b module.Perm) (module.Perm, bool) {
	switch {
	case isPath(a.Kind) && isPath(b.Kind):
		kind := "write"
		if a.Kind == "read" || b.Kind == "read" {
			kind = "read"
		}
		ra, rb := module.Perm{Kind: "read", Arg: a.Arg}, module.Perm{Kind: "read", Arg: b.Arg}
		switch {
		case ra.Covers(rb):
			return module.Perm{Kind: kind, Arg: b.Arg}, true
		case rb.Covers(ra):
			return module.Perm{Kind: kind, Arg: a.Arg}, true
		}
	case a.Kind == "http" && b.Kind == "http":
		switch {
		case a.Covers(b):
			return b, true
		case b.Covers(a):
			return a, true
		}
	}
	return module.Perm{}, false
}

func hasPerm(ps []module.Perm, p module.Perm) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// allowed reports whether grants cover q.
func allowed(grants []module.Perm, q module.Perm) bool {
	for _, g := range grants {
		if g.Covers(q) {
			return true
		}
	}
	return false
}

// Start implements module.Module: it instantiates the code in a runtime
// of its own, with env.Dir as /data, and runs its initialization.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", env.Name, err)
	}
	return m.start(ctx, env, cfg)
}

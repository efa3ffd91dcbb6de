package hostfs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"cheshire/module"
	"cheshire/plan9"
	"cheshire/styx"
)

// ModuleOptions describe a #host module.
type ModuleOptions struct {
	RO         bool   // #host.ro: every export read-only
	Owner      string // the node's owner, who may mount any host path
	DataDir    string // the node's data directory, never served...
	ExposeData bool   // ...except to the owner, if set
	Version    string
}

// Module returns #host (or, with RO, #host.ro) as a module.
func Module(o ModuleOptions) module.Module {
	return &hostModule{ro: o.RO, owner: o.Owner, dataDir: o.DataDir, exposeData: o.ExposeData, version: o.Version}
}

// hostModule is #host (and #host.ro): the host directory named by the
// mount's spec, as the node's OS user. Only the node's owner may mount it,
// except below the paths the owner grants to a user in the module's
// config:
//
//	grant PATH [ro] to USER
//
// The node's data directory (keys, CA, namespaces) is never served, even
// to the owner, unless serve's --expose-data-dir lets the owner (and only
// the owner) reach it.
type hostModule struct {
	ro         bool
	owner      string
	dataDir    string
	exposeData bool // the owner may reach dataDir
	version    string
}

func (h *hostModule) Manifest() module.Manifest {
	if h.ro {
		return module.Manifest{Name: "host.ro", Version: h.version, NoTree: true,
			Description: "host directories, read-only: mount '#host.ro' OLD HOSTPATH (the owner's; grant PATH [ro] to USER)"}
	}
	return module.Manifest{Name: "host", Version: h.version, NoTree: true,
		Description: "host directories: mount '#host' OLD HOSTPATH (the owner's; grant PATH [ro] to USER)"}
}

// A grant lets a user other than the owner mount host paths at or below
// path.
type grant struct {
	path, user string
	ro         bool
}

func parseGrants(cfg module.Config) ([]grant, error) {
	var gs []grant
	for _, e := range cfg.Entries {
		if e.Key != "grant" {
			return nil, e.Errorf("unknown setting; want grant PATH [ro] to USER")
		}
		a := e.Args
		g := grant{}
		if len(a) == 4 && a[1] == "ro" {
			g.ro, a = true, []string{a[0], a[2], a[3]}
		}
		if len(a) != 3 || a[1] != "to" || !filepath.IsAbs(a[0]) || a[2] == "" {
			return nil, e.Errorf("want grant /PATH [ro] to USER")
		}
		g.path, g.user = filepath.Clean(a[0]), a[2]
		gs = append(gs, g)
	}
	return gs, nil
}

func (h *hostModule) CheckConfig(cfg module.Config) error {
	_, err := parseGrants(cfg)
	return err
}

func (h *hostModule) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	gs, err := parseGrants(env.Config)
	if err != nil {
		return nil, err
	}
	return &hostInst{m: h, grants: gs}, nil
}

type hostInst struct {
	m      *hostModule
	grants []grant
}

func (i *hostInst) Stop(ctx context.Context) error { return nil }

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// realPath is p with its symbolic links resolved, so that a link cannot
// lead out of a grant.
func realPath(p string) (string, error) {
	return filepath.EvalSymlinks(filepath.Clean(p))
}

func (i *hostInst) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	spec := "#" + i.m.Manifest().Name
	if aname == "" {
		return nil, fmt.Errorf("%s: want the host directory as the mount's spec", spec)
	}
	if !filepath.IsAbs(aname) {
		return nil, fmt.Errorf("%s: %s: host path must be absolute", spec, aname)
	}
	p, err := realPath(aname)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	ro := i.m.ro
	if uname != i.m.owner {
		ok := false
		for _, g := range i.grants {
			gp, err := realPath(g.path)
			if err == nil && g.user == uname && within(p, gp) {
				ok, ro = true, ro || g.ro
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s is the node owner's; grant %s to %s in /modules/%s/config",
				plan9.ErrPerm, spec, aname, uname, i.m.Manifest().Name)
		}
	}
	opts := []Option{WithCloseWhenUnused()} // one FS per attach, closed with its last file
	if !i.m.exposeData || uname != i.m.owner {
		if data, err := realPath(i.m.dataDir); err == nil && within(p, data) {
			return nil, fmt.Errorf("%w: %s: the node's data directory is not served", plan9.ErrPerm, spec)
		}
		opts = append(opts, WithHidden(i.m.dataDir))
	}
	fs, err := New(p, ro, opts...)
	if err != nil {
		if errors.Is(err, plan9.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	f, err := fs.Attach(ctx, uname, "", auth)
	if err != nil {
		fs.Close()
	}
	return f, err
}

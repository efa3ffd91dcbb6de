package git

import (
	"context"

	"cheshire/module"
	"cheshire/styx"
)

// Module is the git module: a Repos's files at /git. It takes no
// configuration. The repositories belong to the Repos, on disk, and so
// outlive the module's instances.
type Module struct {
	r       *Repos
	version string
}

var _ module.Module = (*Module)(nil)

// NewModule returns the module serving r.
func NewModule(r *Repos, version string) *Module {
	return &Module{r: r, version: version}
}

// Manifest describes the module.
func (m *Module) Manifest() module.Manifest {
	return module.Manifest{Name: "git", Version: m.version, Mount: "/git",
		Description: "git repositories as files: refs moved by compare-and-swap, trees, objects, commits from a writable overlay"}
}

// CheckConfig accepts only an empty configuration.
func (m *Module) CheckConfig(cfg module.Config) error {
	for _, e := range cfg.Entries {
		return e.Errorf("unknown setting (git has none)")
	}
	return nil
}

// Start serves the files.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	if err := m.CheckConfig(env.Config); err != nil {
		return nil, err
	}
	if env.Changed != nil {
		m.r.changed.Store(&env.Changed)
	}
	return instance{m.r}, nil
}

// instance is a running git module.
type instance struct{ r *Repos }

// Attach serves the Repos's files.
func (i instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.r.Attach(ctx, uname, aname, auth)
}

// Stop stops telling watchers of pushes; there is nothing to release.
func (i instance) Stop(ctx context.Context) error {
	i.r.changed.Store(nil)
	return nil
}

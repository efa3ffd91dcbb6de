package store

import (
	"context"

	"cheshire/module"
	"cheshire/styx"
)

// Module is the store module: a Store's files at /store. It takes no
// configuration (policies and holders are set through ctl). The files
// belong to the Store, on disk and at the holders, and so outlive the
// module's instances; the background repairer runs while an instance
// does.
type Module struct {
	s       *Store
	version string
}

var _ module.Module = (*Module)(nil)

// NewModule returns the module serving s.
func NewModule(s *Store, version string) *Module { return &Module{s: s, version: version} }

// Manifest describes the module.
func (m *Module) Manifest() module.Manifest {
	return module.Manifest{Name: "store", Version: m.version, Mount: "/store",
		Description: "files kept across nodes: encrypted, erasure coded, with read, write and verify caps, durable acks and repair"}
}

// CheckConfig accepts only an empty configuration.
func (m *Module) CheckConfig(cfg module.Config) error {
	for _, e := range cfg.Entries {
		return e.Errorf("unknown setting (store has none; see its ctl)")
	}
	return nil
}

// Start serves the files.
func (m *Module) Start(ctx context.Context, env module.Env) (module.Instance, error) {
	if err := m.CheckConfig(env.Config); err != nil {
		return nil, err
	}
	return instance{m.s}, nil
}

type instance struct{ s *Store }

// Attach serves the Store's files.
func (i instance) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	return i.s.Attach(ctx, uname, aname, auth)
}

// Stop does nothing: the Store's owner closes it.
func (i instance) Stop(ctx context.Context) error { return nil }

package module

import (
	"context"

	"cheshire/plan9"
	"cheshire/styx"
)

// Native makes a Module of a provider compiled into the node. Its files
// are a's, which keeps its state across stops and restarts (so a restart
// of tmp keeps what was written to it); it takes no configuration.
func Native(mf Manifest, a styx.Attacher) Module { return &native{mf: mf, a: a} }

// NativePerNS is Native for a provider that serves each namespace a tree
// of its own (#ns).
func NativePerNS(mf Manifest, mk func(n Namespace) styx.Attacher) Module {
	mf.NoTree = true
	return &native{mf: mf, mk: mk}
}

type native struct {
	mf Manifest
	a  styx.Attacher
	mk func(Namespace) styx.Attacher
}

func (n *native) Manifest() Manifest { return n.mf }

func (n *native) CheckConfig(cfg Config) error {
	if len(cfg.Entries) > 0 {
		e := cfg.Entries[0]
		return e.Errorf("module %s has no setting %q", n.mf.Name, e.Key)
	}
	return nil
}

func (n *native) Start(ctx context.Context, env Env) (Instance, error) {
	return &nativeInst{n: n}, nil
}

type nativeInst struct{ n *native }

func (i *nativeInst) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	if i.n.a == nil {
		return nil, errPerNS
	}
	return i.n.a.Attach(ctx, uname, aname, auth)
}

func (i *nativeInst) ForNamespace(n Namespace) styx.Attacher {
	if i.n.mk == nil {
		return i.n.a
	}
	return i.n.mk(n)
}

func (i *nativeInst) Stop(ctx context.Context) error { return nil }

const errPerNS = plan9.Error("this module serves namespaces only: mount it in one")

package main

import (
	"context"

	"cheshire/importers/find"
	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/styx"
)

// findModule is #find: a walk looks the path up in the DHT, learns the
// key of a node that announces it by dialing it, and imports the path
// from it on the connection imports of that key share.
func (p *parts) findModule() module.Module {
	return find.Module(find.Options{
		Self:  p.id.ID(),
		Find:  p.dhtFind,
		Probe: p.probeKey,
		Import: func(ctx context.Context, key, addr, path string, wait bool) (styx.File, error) {
			k, err := nodekey.Decode(key)
			if err != nil {
				return nil, err
			}
			return p.im.ImportAt(ctx, k, addr, path, wait)
		},
	}, version)
}

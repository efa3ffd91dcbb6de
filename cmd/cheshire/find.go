package main

import (
	"context"
	"fmt"
	"strconv"

	"cheshire/importers/find"
	"cheshire/importers/remote"
	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// findModule is #find: a walk looks the path up in the DHT, learns the
// key of a node that announces it by dialing it, and imports the path
// from it on the connection imports of that key share.
func (p *parts) findModule() module.Module {
	return find.Module(find.Options{
		Self: p.id.ID(),
		Find: func(ctx context.Context, path string) ([]string, error) {
			n := p.dht.Node()
			if n == nil {
				return nil, fmt.Errorf("dht: %w", plan9.ErrModuleStopped)
			}
			aps, err := n.Find(ctx, path)
			if err != nil {
				return nil, err
			}
			out := make([]string, len(aps))
			for i, ap := range aps {
				out[i] = "tls!" + ap.Addr().Unmap().String() + "!" + strconv.Itoa(int(ap.Port()))
			}
			return out, nil
		},
		Probe: func(ctx context.Context, addr string) (string, error) {
			k, err := remote.KeyAt(ctx, p.id, addr)
			if err != nil {
				return "", err
			}
			return nodekey.Encode(k), nil
		},
		Import: func(ctx context.Context, key, addr, path string, wait bool) (styx.File, error) {
			k, err := nodekey.Decode(key)
			if err != nil {
				return nil, err
			}
			return p.im.ImportAt(ctx, k, addr, path, wait)
		},
	}, version)
}

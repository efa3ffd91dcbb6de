package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"cheshire/importers/remote"
	"cheshire/nodekey"
	"cheshire/plan9"
)

// listenTLS announces 9P over TLS on a tls!HOST!PORT dial string.
func listenTLS(addr string, id *nodekey.Identity) (net.Listener, error) {
	cfg, err := id.ServerTLS()
	if err != nil {
		return nil, err
	}
	l, err := plan9.Listen("tcp!" + strings.TrimPrefix(addr, "tls!"))
	if err != nil {
		return nil, err
	}
	return nodekey.NewListener(l, cfg), nil
}

// dialer returns how the 9P clients reach addr: tls!HOST!PORT with the
// server's key (z-base-32, -k) and this user's node identity; any other
// dial string as plan9.Dial does.
func dialer(key string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if !strings.HasPrefix(addr, "tls!") {
			return plan9.Dial(ctx, addr)
		}
		if key == "" {
			return nil, fmt.Errorf("%s: give the server's key with -k (cat /node/id on it)", addr)
		}
		pk, err := nodekey.Decode(key)
		if err != nil {
			return nil, fmt.Errorf("-k %s: %w", key, err)
		}
		id, err := nodekey.Load(dataDir())
		if err != nil {
			return nil, err
		}
		return remote.TLSDialer(id)(ctx, addr, pk)
	}
}

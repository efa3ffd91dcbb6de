package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"cheshire/nodekey"
	"cheshire/plan9"
)

// TLSDialer returns a Dial for Options: it reaches tls!HOST!PORT over
// TCP, proves id's key and requires the server to prove key.
func TLSDialer(id *nodekey.Identity) func(ctx context.Context, addr string, key ed25519.PublicKey) (net.Conn, error) {
	return func(ctx context.Context, addr string, key ed25519.PublicKey) (net.Conn, error) {
		if !strings.HasPrefix(addr, "tls!") {
			return nil, fmt.Errorf("%s: not a tls!HOST!PORT address", addr)
		}
		cfg, err := id.ClientTLS(key)
		if err != nil {
			return nil, err
		}
		c, err := plan9.Dial(ctx, "tcp!"+strings.TrimPrefix(addr, "tls!"))
		if err != nil {
			return nil, err
		}
		tc := nodekey.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		return tc, nil
	}
}

// KeyAt dials addr (tls!HOST!PORT), proving id's key, and returns the
// key the node there proves: how a node found only by address (a DHT
// announce) is then imported by key.
func KeyAt(ctx context.Context, id *nodekey.Identity, addr string) (ed25519.PublicKey, error) {
	if !strings.HasPrefix(addr, "tls!") {
		return nil, fmt.Errorf("%s: not a tls!HOST!PORT address", addr)
	}
	cfg, err := id.ProbeTLS()
	if err != nil {
		return nil, err
	}
	c, err := plan9.Dial(ctx, "tcp!"+strings.TrimPrefix(addr, "tls!"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	k, ok := nodekey.Peer(tc)
	if !ok {
		return nil, fmt.Errorf("%s: no key proved", addr)
	}
	return k, nil
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"cheshire/importers/remote"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
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
	return tls.NewListener(l, cfg), nil
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

// users maps remote keys to the node's users, from DIR/users: lines of
// "NAME KEY", # comments. It is read at each remote attach, so edits
// take effect at once.
type users struct{ file string }

func (u users) lookup(key ed25519.PublicKey) (string, error) {
	data, err := os.ReadFile(u.file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("users: %w", err)
	}
	want := nodekey.Encode(key)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") && f[1] == want {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("%w: key %s is not a user of this node", plan9.ErrPerm, want)
}

// remoteAuth is the attacher of every listener: a connection over TLS
// attaches as the user its proven key belongs to (the uname it sends is
// not trusted), or else to the view of what is exported to its key; a
// local one (the owner-only unix socket, or plain tcp
// the owner chose to open) as it says.
type remoteAuth struct {
	next  *ns.Manager
	users users
}

func newRemoteAuth(next *ns.Manager, dir string) remoteAuth {
	return remoteAuth{next: next, users: users{file: filepath.Join(dir, "users")}}
}

func (r remoteAuth) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	if ci := styx.ConnInfoFrom(ctx); ci != nil {
		if _, isTLS := ci.Conn.(*tls.Conn); isTLS {
			key, ok := nodekey.Peer(ci.Conn)
			if !ok {
				return nil, plan9.ErrPerm
			}
			name, err := r.users.lookup(key)
			if err != nil {
				// Not a user: the key sees what is exported to it, if anything.
				return r.next.AttachRemote(ctx, nodekey.Encode(key), aname)
			}
			uname = name
		}
	}
	return r.next.Attach(ctx, uname, aname, auth)
}

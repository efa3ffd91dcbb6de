package ns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"

	"cheshire/nodekey"
	"cheshire/plan9"
	"cheshire/styx"
)

// WithUsers names the file that maps remote keys to the node's users:
// lines of "NAME KEY" (KEY in z-base-32), # comments. It is read at each
// attach by key, so edits take effect at once.
func WithUsers(file string) Option { return func(m *Manager) { m.usersFile = file } }

// userOf returns the user the users file maps key to.
func (m *Manager) userOf(key ed25519.PublicKey) (string, error) {
	want := nodekey.Encode(key)
	if m.usersFile == "" {
		return "", fmt.Errorf("%w: key %s is not a user of this node", plan9.ErrPerm, want)
	}
	data, err := os.ReadFile(m.usersFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("ns: users: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") && f[1] == want {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("%w: key %s is not a user of this node", plan9.ErrPerm, want)
}

// WithKeyService serves aname (a name starting with '#', such as
// "#msg") to any remote key that attaches with it over TLS: attach gets
// the key the connection proved (z-base-32), so a service between
// nodes (messages, watches) knows its peer without trusting what the
// peer writes, and rides on the connection imports already share. The
// rest of the aname after the service's name ("#watch/tmp" gives
// "/tmp") is passed on.
func WithKeyService(aname string, attach func(ctx context.Context, key, rest string) (styx.File, error)) Option {
	return func(m *Manager) {
		if m.keyServices == nil {
			m.keyServices = map[string]func(ctx context.Context, key, rest string) (styx.File, error){}
		}
		m.keyServices[aname] = attach
	}
}

// keyService returns the service aname names, and the rest of aname.
func (m *Manager) keyService(aname string) (func(ctx context.Context, key, rest string) (styx.File, error), string) {
	if !strings.HasPrefix(aname, "#") {
		return nil, ""
	}
	name, rest, _ := strings.Cut(aname, "/")
	f := m.keyServices[name]
	if f == nil {
		return nil, ""
	}
	return f, "/" + rest
}

// AttachKey attaches for the holder of key (proven by the connection,
// not claimed): in the namespace of the user the users file maps it to,
// or, for a key that is no user, to the view of what is exported to it
// (AttachRemote), which may be empty.
func (m *Manager) AttachKey(ctx context.Context, key ed25519.PublicKey, aname string) (styx.File, error) {
	if svc, rest := m.keyService(aname); svc != nil {
		return svc(ctx, nodekey.Encode(key), rest)
	}
	name, err := m.userOf(key)
	if err != nil {
		return m.AttachRemote(ctx, nodekey.Encode(key), aname)
	}
	return m.Attach(ctx, name, aname, nil)
}

// ConnAttacher is the attacher of the node's listeners: a connection
// over TLS attaches by its peer's key (AttachKey; the uname it sends is
// not trusted), any other (the owner-only unix socket, or a plain TCP
// port the owner chose to open) as the uname it sends.
func (m *Manager) ConnAttacher() styx.Attacher { return connAttacher{m} }

type connAttacher struct{ m *Manager }

func (c connAttacher) Attach(ctx context.Context, uname, aname string, auth styx.File) (styx.File, error) {
	if ci := styx.ConnInfoFrom(ctx); ci != nil {
		if _, isTLS := nodekey.TLS(ci.Conn); isTLS {
			key, ok := nodekey.Peer(ci.Conn)
			if !ok {
				return nil, plan9.ErrPerm
			}
			return c.m.AttachKey(ctx, key, aname)
		}
	}
	return c.m.Attach(ctx, uname, aname, auth)
}

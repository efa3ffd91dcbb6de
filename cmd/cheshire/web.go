package main

import (
	"context"
	"net"
	"net/http"
	"path"
	"path/filepath"

	"cheshire/ns"
	"cheshire/styx"
	"cheshire/webui"
)

// webUI is the node's web UI at https://NODE/: the signed-in user's own
// namespace. A client certificate from /ca signs in by itself; the
// sign-in form takes a user and its password (set by writing
// /node/password) or token of /git/tokens, or a passkey
// (kept in DIR/webui/passkeys), at the names of the node's certificate.
func (p *parts) webUI(dir string) http.Handler {
	var names []string
	for _, n := range httpsNames() {
		if net.ParseIP(n) == nil {
			names = append(names, n)
		}
	}
	return webui.New(webui.Options{
		PasskeyDir:   filepath.Join(dir, "webui", "passkeys"),
		PasskeyNames: names,
		Attach:       p.userRoot,
		Certificate: func(r *http.Request) (string, error) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				return "", nil
			}
			return certUser(p.ca, r.TLS.PeerCertificates)
		},
		Password: func(user, password string) bool {
			return p.pws.Check(user, password) || p.git.TokenUser(user, password)
		},
		Log: p.log.With("part", "webui"),
	})
}

// userRoot is the root of user's own namespace, as the web pages (the
// UI's, the apps', git's /ns/) see it.
func (p *parts) userRoot(ctx context.Context, user string) (styx.File, error) {
	return p.ns.Attach(ctx, user, "", nil)
}

// requestsOption is how remote keys reach /node/requests: one to which
// nothing is exported files an access request by attaching
// (accessRequest), and any may attach to "#requests" to write "request
// KIND [ARGS]" (join, holder) to its ctl, as itself.
func (p *parts) requestsOption() ns.Option {
	return func(m *ns.Manager) {
		ns.WithRefused(p.accessRequest)(m)
		ns.WithKeyService("#requests", func(ctx context.Context, key, rest string) (styx.File, error) {
			return p.reqs.Ask().Attach(ctx, "key:"+key, rest, nil)
		})(m)
	}
}

// accessRequest files an access request in /node/requests for a remote
// key refused because nothing is exported to it (its key proven by its
// TLS handshake): the path it attached to, read-only. Approving it, on
// the web UI's /approvals or by hand, writes "export PATH ro to KEY" to
// the approver's /ns/ctl.
func (p *parts) accessRequest(ctx context.Context, key, aname string) {
	r, err := p.reqs.File("key:"+key, "access", []string{path.Clean("/" + aname)})
	if err != nil {
		p.log.Info("access request not filed", "key", key, "aname", aname, "err", err)
		return
	}
	p.log.Info("access request", "key", key, "id", r.ID, "line", r.Line)
}

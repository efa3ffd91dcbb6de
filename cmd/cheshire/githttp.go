package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"

	"cheshire/plan9"
	"cheshire/providers/ca"
	"cheshire/providers/git/nsrepo"
	"cheshire/providers/git/smarthttp"
	"cheshire/styx"

	gogit "github.com/go-git/go-git/v5"
)

// gitHandlers are git's smart HTTP on the node's HTTPS listener:
// /git/REPO for the repositories of /git, and /ns/PATH for any subtree
// of the signed-in user's namespace as a repository made on the fly.
func (p *parts) gitHandlers(dir string, log *slog.Logger) (gitH, nsH http.Handler) {
	tmp := filepath.Join(dir, "git", "tmp")
	gitH = smarthttp.Handler("/git", smarthttp.Options{
		Open: p.git.Open, Authorize: p.gitAuthorize, TempDir: tmp,
		Stream: func(repo string) smarthttp.PushListener { return p.git.Begin(repo) },
		Log:    log.With("module", "git", "part", "http"),
	})
	ns := &nsGit{p: p, tmp: filepath.Join(tmp, "ns"), log: log.With("module", "git", "part", "ns"), users: map[string]http.Handler{}}
	return gitH, ns
}

// nsGit serves /ns/PATH: the user signs in with a token of /git/tokens
// and gets the subtree of their own namespace; what they may read and
// write is what their namespace lets them.
type nsGit struct {
	p   *parts
	tmp string
	log *slog.Logger

	mu    sync.Mutex
	users map[string]http.Handler // guarded by mu: a handler, and its repositories, per user
}

func (g *nsGit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, err := g.p.gitUser(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="cheshire"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	g.handler(user).ServeHTTP(w, r)
}

// gitUser is the user a git request signs in as: the common name of a
// client certificate issued by /ca (not revoked), else the user of a
// token of /git/tokens given by basic authentication.
func (p *parts) gitUser(r *http.Request) (string, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return certUser(p.ca, r.TLS.PeerCertificates)
	}
	user, token, ok := r.BasicAuth()
	if !ok {
		return "", errors.New("git: sign in with a certificate from /ca, or a user and its token of /git/tokens")
	}
	if !p.git.TokenUser(user, token) {
		return "", errors.New("git: unknown user or wrong token")
	}
	return user, nil
}

// certUser checks that chain (leaf first) leads to the node's CA for
// client authentication and that the leaf is not revoked, and returns
// its common name.
func certUser(authority *ca.CA, chain []*x509.Certificate) (string, error) {
	inter := x509.NewCertPool()
	inter.AddCert(authority.Intermediate())
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{Roots: authority.RootPool(), Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	switch {
	case err != nil:
		return "", fmt.Errorf("git: client certificate: %v", err)
	case authority.IsRevoked(leaf.SerialNumber):
		return "", errors.New("git: client certificate revoked")
	case leaf.Subject.CommonName == "":
		return "", errors.New("git: client certificate names no user")
	}
	return leaf.Subject.CommonName, nil
}

// handler is user's smart-HTTP handler over nsrepo.
func (g *nsGit) handler(user string) http.Handler {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h, ok := g.users[user]; ok {
		return h
	}
	repos := nsrepo.New(func(ctx context.Context) (styx.File, error) {
		return g.p.userRoot(ctx, user)
	}, nsrepo.Options{Log: g.log.With("user", user)})
	h := smarthttp.Handler("/ns", smarthttp.Options{
		Nested: true, NoDeltas: true,
		Open: func(path string) (*gogit.Repository, error) {
			r, err := repos.Open(context.Background(), "/"+path)
			if errors.Is(err, plan9.ErrNotDir) {
				return nil, fmt.Errorf("%w: %v", plan9.ErrNotFound, err) // a file is no repository: 404
			}
			return r, err
		},
		Authorize: func(*http.Request, string, bool) (string, error) { return user, nil }, // signed in above
		Receive: func(ctx context.Context, path string, r *gogit.Repository, us []smarthttp.RefUpdate) error {
			updates := make([]nsrepo.Update, len(us))
			for i, u := range us {
				updates[i] = nsrepo.Update(u)
			}
			return repos.Receive(ctx, "/"+path, r, updates)
		},
		TempDir: filepath.Join(g.tmp, user),
		Log:     g.log.With("user", user),
	})
	g.users[user] = h
	return h
}

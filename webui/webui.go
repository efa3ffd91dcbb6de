// Package webui is the node's web UI at https://NODE/: a view of the
// signed-in user's own namespace, read and written through the same
// styx.File interface that 9P serves, so that the namespace's
// permission checks are the UI's too; it has no back door of its own.
//
//	/                     sign in: a client certificate from /ca signs in by itself; else a
//	                      user and token, or a passkey
//	/fs/PATH              the namespace: a directory listed, a file shown and edited,
//	                      a ctl file with a command line and its reply
//	/tail/PATH            a file followed live (server-sent events), as tail -f
//	/modules              the modules: state, start, stop, restart, reload
//	/keys                 the CA: certificates issued and revoked, backup and restore
//	/passkeys             the user's passkeys (WebAuthn): added, removed
//	/approvals            the requests of /node/requests, approved (their ctl line written
//	                      through the user's namespace) or refused
//	/node                 the node: id, addresses, DHT and peers, imports, exports, zones
//	/graph                a live graph of the node's request rates (9P, HTTPS, DNS), from /node/stats,
//	                      and of the cluster: this node, its imports with their connections'
//	                      state (/ns/imports), the ledger's members (/ledger/status)
//
// Pages are html/template, embedded; the little JavaScript there is
// (following a file live, the graphs, passkeys) is static files of its
// own, allowed by the Content-Security-Policy, which allows nothing
// inline. Sessions are server-side, named by an HttpOnly, Secure,
// SameSite=Strict cookie; every form that changes anything carries the
// session's CSRF token, and a POST from another site (Sec-Fetch-Site,
// Origin) is refused.
//
// Approving a request reads it again from /node/requests/ID (never from
// the form), opens /node/requests/decide (so that one who may not decide
// is refused first), writes the request's line to its ctl file of the
// user's namespace, then "approve ID" to decide.
//
// Passkeys (github.com/go-webauthn/webauthn) are kept, a file a user,
// in Options.PasskeyDir through atomicfile; they work at the host names
// of Options.PasskeyNames only, since WebAuthn's relying party cannot
// be an IP address.
package webui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"cheshire/styx"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a UI.
type Options struct {
	// Attach returns the root of user's namespace.
	Attach func(ctx context.Context, user string) (styx.File, error)
	// Certificate returns the user a request's client certificate names,
	// "" if it has none, or an error if it has one that is not good.
	Certificate func(r *http.Request) (string, error)
	// Password reports whether password is user's (the sign-in form).
	Password func(user, password string) bool
	// PasskeyDir, if set, keeps the users' passkeys (WebAuthn
	// credentials), a file each; without it there are none.
	PasskeyDir string
	// PasskeyNames are the host names passkeys work at (WebAuthn's
	// relying party is the name the page was reached by; an IP address
	// cannot be one): the names the node's certificate is for.
	PasskeyNames []string
	// Log receives a line per sign-in and per refused request.
	Log *slog.Logger
	// Now is the clock of sessions (time.Now if nil).
	Now func() time.Time
}

// Session limits.
const (
	SessionTTL  = 12 * time.Hour
	MaxSessions = 4096
)

const cookieName = "cheshire_session"

// UI serves the pages.
type UI struct {
	o    Options
	mux  *http.ServeMux
	tmpl *template.Template

	pk *passkeys // nil without Options.PasskeyDir

	mu       sync.Mutex
	sessions map[string]*session // guarded by mu: by id
}

type session struct {
	user     string
	csrf     string
	expires  time.Time
	ceremony *ceremony // guarded by UI.mu: a passkey's registration under way
}

// New returns the UI.
func New(o Options) *UI {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	u := &UI{o: o, mux: http.NewServeMux(), sessions: map[string]*session{}}
	if o.PasskeyDir != "" {
		u.pk = &passkeys{dir: o.PasskeyDir, ceremonies: map[string]*ceremony{}}
	}
	u.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"join":  joinPath,
		"human": human,
		"list":  func(s ...string) []string { return s },
	}).ParseFS(templateFS, "templates/*.html"))
	u.mux.HandleFunc("GET /{$}", u.home)
	u.mux.HandleFunc("POST /signin", u.signin)
	u.mux.HandleFunc("POST /signout", u.signed(u.signout))
	u.mux.HandleFunc("GET /fs/{path...}", u.signed(u.browse))
	u.mux.HandleFunc("POST /fs/{path...}", u.signed(u.change))
	u.mux.HandleFunc("GET /tail/{path...}", u.signed(u.tail))
	u.mux.HandleFunc("GET /modules", u.signed(u.modules))
	u.mux.HandleFunc("POST /modules", u.signed(u.moduleCtl))
	u.mux.HandleFunc("GET /node", u.signed(u.node))
	u.mux.HandleFunc("GET /graph", u.signed(u.graph))
	u.mux.HandleFunc("GET /stats.json", u.signed(u.stats))
	u.mux.HandleFunc("GET /cluster.json", u.signed(u.cluster))
	u.mux.HandleFunc("GET /keys", u.signed(u.keys))
	u.mux.HandleFunc("POST /keys", u.signed(u.keysCtl))
	u.mux.HandleFunc("GET /passkeys", u.signed(u.passkeysPage))
	u.mux.HandleFunc("POST /passkeys", u.signed(u.passkeyRemove))
	u.mux.HandleFunc("POST /passkeys/begin", u.signed(u.registerBegin))
	u.mux.HandleFunc("POST /passkeys/finish", u.signed(u.registerFinish))
	u.mux.HandleFunc("POST /passkey/begin", u.loginBegin)
	u.mux.HandleFunc("POST /passkey/finish", u.loginFinish)
	u.mux.HandleFunc("GET /approvals", u.signed(u.approvals))
	u.mux.HandleFunc("POST /approvals", u.signed(u.decide))
	u.mux.Handle("GET /static/", http.FileServerFS(staticFS))
	return u
}

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost && crossSite(r) {
		u.o.Log.Info("webui: cross-site request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		u.fail(w, r, http.StatusForbidden, "cross-site request refused")
		return
	}
	u.mux.ServeHTTP(w, r)
}

// crossSite reports whether a request comes from another site: the
// browser says so in Sec-Fetch-Site, or its Origin is not this host.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		ou, err := url.Parse(o)
		if err != nil || ou.Host != r.Host {
			return true
		}
	}
	return false
}

// request is a signed-in request.
type request struct {
	*http.Request
	user string
	csrf string
	root styx.File // the user's namespace, clunked when the request ends
}

// signed wraps a handler that needs a session: without one the visitor
// is sent to sign in; with one, the user's namespace is attached and,
// for a POST, the CSRF token checked.
func (u *UI) signed(h func(w http.ResponseWriter, r *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, hr *http.Request) {
		s := u.session(hr)
		if s == nil {
			if hr.Method == http.MethodGet {
				http.Redirect(w, hr, "/?next="+url.QueryEscape(hr.URL.Path), http.StatusSeeOther)
				return
			}
			u.fail(w, hr, http.StatusUnauthorized, "not signed in")
			return
		}
		if hr.Method == http.MethodPost {
			hr.Body = http.MaxBytesReader(w, hr.Body, MaxUpload)
			parse := hr.ParseForm
			if strings.HasPrefix(hr.Header.Get("Content-Type"), "multipart/form-data") {
				parse = func() error { return hr.ParseMultipartForm(MaxUpload) }
			}
			if err := parse(); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					u.fail(w, hr, http.StatusRequestEntityTooLarge, fmt.Sprintf("form too large: more than %d bytes", MaxUpload))
					return
				}
				u.fail(w, hr, http.StatusBadRequest, "bad form: "+err.Error())
				return
			}
			if subtle.ConstantTimeCompare([]byte(hr.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				u.o.Log.Info("webui: bad csrf token", "user", s.user, "path", hr.URL.Path)
				u.fail(w, hr, http.StatusForbidden, "bad or missing form token: reload the page")
				return
			}
		}
		root, err := u.o.Attach(hr.Context(), s.user)
		if err != nil {
			u.fail(w, hr, http.StatusInternalServerError, "your namespace: "+err.Error())
			return
		}
		defer root.Clunk()
		h(w, &request{Request: hr, user: s.user, csrf: s.csrf, root: root})
	}
}

// MaxUpload bounds a POST's body: a file saved, a ctl line.
const MaxUpload = 4 << 20

// session returns the request's live session, or nil.
func (u *UI) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.sessions[c.Value]
	if s == nil || u.o.Now().After(s.expires) {
		delete(u.sessions, c.Value)
		return nil
	}
	return s
}

// newSession signs user in: a session and its cookie.
func (u *UI) newSession(w http.ResponseWriter, user string) {
	id, csrf := token(), token()
	now := u.o.Now()
	u.mu.Lock()
	if len(u.sessions) >= MaxSessions {
		var oldest string
		for k, s := range u.sessions {
			if now.After(s.expires) {
				delete(u.sessions, k)
			} else if oldest == "" || s.expires.Before(u.sessions[oldest].expires) {
				oldest = k
			}
		}
		if len(u.sessions) >= MaxSessions {
			delete(u.sessions, oldest)
		}
	}
	u.sessions[id] = &session{user: user, csrf: csrf, expires: now.Add(SessionTTL)}
	u.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL.Seconds())})
}

func token() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// home is the sign-in page, or the namespace for one signed in. A
// request with a good client certificate is signed in by it.
func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	if u.session(r) != nil {
		http.Redirect(w, r, next(r), http.StatusSeeOther)
		return
	}
	if u.o.Certificate != nil {
		user, err := u.o.Certificate(r)
		if err != nil {
			u.fail(w, r, http.StatusForbidden, err.Error())
			return
		}
		if user != "" {
			u.o.Log.Info("webui: signed in", "user", user, "by", "certificate")
			u.newSession(w, user)
			http.Redirect(w, r, next(r), http.StatusSeeOther)
			return
		}
	}
	u.render(w, http.StatusOK, "signin.html", map[string]any{"Next": next(r)})
}

// next is where to go after signing in: a local path only.
func next(r *http.Request) string {
	n := r.FormValue("next")
	if len(n) < 2 || n[0] != '/' || n[1] == '/' || n[1] == '\\' {
		return "/fs/"
	}
	return n
}

func (u *UI) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	user, pw := r.PostFormValue("user"), r.PostFormValue("password")
	if user == "" || u.o.Password == nil || !u.o.Password(user, pw) {
		u.o.Log.Info("webui: sign-in refused", "user", user)
		u.render(w, http.StatusUnauthorized, "signin.html", map[string]any{"Next": next(r), "Error": "unknown user or wrong password"})
		return
	}
	u.o.Log.Info("webui: signed in", "user", user, "by", "password")
	u.newSession(w, user)
	http.Redirect(w, r, next(r), http.StatusSeeOther)
}

func (u *UI) signout(w http.ResponseWriter, r *request) {
	if c, err := r.Cookie(cookieName); err == nil {
		u.mu.Lock()
		delete(u.sessions, c.Value)
		u.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r.Request, "/", http.StatusSeeOther)
}

func (u *UI) render(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := u.tmpl.ExecuteTemplate(w, name, data); err != nil {
		u.o.Log.Warn("webui: template", "name", name, "err", err)
	}
}

// fail answers with a page that says what was wrong.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	u.render(w, code, "error.html", map[string]any{"Code": code, "Status": http.StatusText(code), "Msg": msg})
}

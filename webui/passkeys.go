// Passkeys (WebAuthn, github.com/go-webauthn/webauthn): a signed-in
// user registers one on /passkeys; anyone signs in with one from the
// sign-in page, the passkey naming its user (a discoverable
// credential). Each user's credentials are kept in a file of their own
// under Options.PasskeyDir, written atomically.

package webui

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cheshire/atomicfile"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Passkey limits.
const (
	MaxPasskeys   = 16              // a user's credentials
	maxCeremonies = 1024            // sign-ins begun and not finished
	ceremonyTTL   = 5 * time.Minute // how long one may take
)

// passkeyUser is a user's file: its WebAuthn user handle (random) and
// credentials. It implements webauthn.User.
type passkeyUser struct {
	Name        string                `json:"name"`
	Handle      []byte                `json:"handle"`
	Credentials []webauthn.Credential `json:"credentials"`
}

func (p *passkeyUser) WebAuthnID() []byte                         { return p.Handle }
func (p *passkeyUser) WebAuthnName() string                       { return p.Name }
func (p *passkeyUser) WebAuthnDisplayName() string                { return p.Name }
func (p *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return p.Credentials }

// passkeys keeps the users' files and the ceremonies under way.
type passkeys struct {
	dir string

	fileMu sync.Mutex // serialises the files' read-modify-write

	mu         sync.Mutex
	ceremonies map[string]*ceremony // guarded by mu: sign-ins begun, by id
}

// A ceremony is a sign-in begun: the library's session data.
type ceremony struct {
	data    webauthn.SessionData
	rpID    string
	expires time.Time
}

// file is the path of user's file: its name base64url-encoded, so that
// any user name is one file name.
func (p *passkeys) file(user string) string {
	return filepath.Join(p.dir, base64.RawURLEncoding.EncodeToString([]byte(user))+".json")
}

// load reads user's file; a user without one has no credentials yet and
// a new random handle.
func (p *passkeys) load(user string) (*passkeyUser, error) {
	b, err := os.ReadFile(p.file(user))
	if errors.Is(err, os.ErrNotExist) {
		h := make([]byte, 32)
		rand.Read(h)
		return &passkeyUser{Name: user, Handle: h}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("passkeys of %s: %w", user, err)
	}
	var u passkeyUser
	if err := json.Unmarshal(b, &u); err != nil || u.Name != user || len(u.Handle) == 0 {
		return nil, fmt.Errorf("passkeys of %s: bad file %s", user, p.file(user))
	}
	return &u, nil
}

func (p *passkeys) save(u *passkeyUser) error {
	b, err := json.MarshalIndent(u, "", "\t")
	if err != nil {
		return fmt.Errorf("passkeys of %s: %w", u.Name, err)
	}
	if err := atomicfile.Write(p.file(u.Name), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("passkeys of %s: %w", u.Name, err)
	}
	return nil
}

// byHandle finds the user whose handle is h.
func (p *passkeys) byHandle(h []byte) (*passkeyUser, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		user, err := base64.RawURLEncoding.DecodeString(name)
		if err != nil {
			continue
		}
		u, err := p.load(string(user))
		if err == nil && string(u.Handle) == string(h) {
			return u, nil
		}
	}
	return nil, errors.New("passkeys: no such user")
}

// relyingParty is the WebAuthn relying party for r's host, which must be
// one of names (the names the node's certificate is for; not an IP,
// which WebAuthn does not take).
func relyingParty(r *http.Request, names []string) (*webauthn.WebAuthn, error) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil || !slices.Contains(names, host) {
		return nil, fmt.Errorf("passkeys cannot be used at %s: sign in at a name of the node (%s)", host, strings.Join(names, ", "))
	}
	w, err := webauthn.New(&webauthn.Config{RPID: host, RPDisplayName: "cheshire node", RPOrigins: []string{"https://" + r.Host}})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return w, nil
}

// passkeysPage lists the user's passkeys, with the button that adds one.
func (u *UI) passkeysPage(w http.ResponseWriter, r *request) {
	data := map[string]any{"User": r.user, "CSRF": r.csrf, "Done": r.URL.Query().Get("done")}
	if u.pk == nil {
		data["Err"] = "passkeys are not kept on this node"
	} else if pu, err := u.pk.load(r.user); err != nil {
		data["Err"] = err.Error()
	} else {
		var ids []string
		for _, c := range pu.Credentials {
			ids = append(ids, base64.RawURLEncoding.EncodeToString(c.ID))
		}
		data["Passkeys"] = ids
	}
	u.render(w, http.StatusOK, "passkeys.html", data)
}

// passkeyRemove removes one of the signed-in user's passkeys (a form
// of /passkeys, with its credential id).
func (u *UI) passkeyRemove(w http.ResponseWriter, r *request) {
	if u.pk == nil {
		u.fail(w, r.Request, http.StatusNotFound, "passkeys are not kept on this node")
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("id"))
	if err != nil || len(id) == 0 {
		u.fail(w, r.Request, http.StatusBadRequest, "bad passkey id")
		return
	}
	u.pk.fileMu.Lock()
	defer u.pk.fileMu.Unlock()
	pu, err := u.pk.load(r.user)
	if err != nil {
		u.fail(w, r.Request, http.StatusInternalServerError, err.Error())
		return
	}
	i := slices.IndexFunc(pu.Credentials, func(c webauthn.Credential) bool { return string(c.ID) == string(id) })
	if i < 0 {
		u.fail(w, r.Request, http.StatusNotFound, "no such passkey")
		return
	}
	pu.Credentials = slices.Delete(pu.Credentials, i, i+1)
	if err := u.pk.save(pu); err != nil {
		u.fail(w, r.Request, http.StatusInternalServerError, err.Error())
		return
	}
	u.o.Log.Info("webui: passkey removed", "user", r.user)
	http.Redirect(w, r.Request, "/passkeys?done=removed", http.StatusSeeOther)
}

// jsonError answers a script's request with an error it shows.
func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// registerBegin starts adding a passkey for the signed-in user: the
// creation options, the session's ceremony kept with the session.
func (u *UI) registerBegin(w http.ResponseWriter, r *request) {
	if u.pk == nil {
		jsonError(w, http.StatusNotFound, "passkeys are not kept on this node")
		return
	}
	wa, err := relyingParty(r.Request, u.o.PasskeyNames)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The user's file is made now if it is not there, so that the
	// handle the authenticator keeps is the one kept here.
	u.pk.fileMu.Lock()
	pu, err := u.pk.load(r.user)
	if err == nil && len(pu.Credentials) == 0 {
		err = u.pk.save(pu)
	}
	u.pk.fileMu.Unlock()
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(pu.Credentials) >= MaxPasskeys {
		jsonError(w, http.StatusConflict, fmt.Sprintf("no more passkeys: %d already", MaxPasskeys))
		return
	}
	var exclude []protocol.CredentialDescriptor
	for i := range pu.Credentials {
		exclude = append(exclude, pu.Credentials[i].Descriptor())
	}
	opts, data, err := wa.BeginRegistration(pu,
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithExclusions(exclude))
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "passkeys: "+err.Error())
		return
	}
	u.setSessionCeremony(r, &ceremony{data: *data, rpID: wa.Config.RPID, expires: u.o.Now().Add(ceremonyTTL)})
	writeJSON(w, opts)
}

// registerFinish checks the new credential against the session's
// ceremony and keeps it in the user's file.
func (u *UI) registerFinish(w http.ResponseWriter, r *request) {
	c := u.takeSessionCeremony(r)
	if u.pk == nil || c == nil || u.o.Now().After(c.expires) {
		jsonError(w, http.StatusBadRequest, "no passkey registration under way: begin again")
		return
	}
	wa, err := relyingParty(r.Request, u.o.PasskeyNames)
	if err != nil || wa.Config.RPID != c.rpID {
		jsonError(w, http.StatusBadRequest, "passkey registration begun at another name")
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(strings.NewReader(r.PostFormValue("credential")))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "bad passkey: "+errText(err))
		return
	}
	u.pk.fileMu.Lock()
	defer u.pk.fileMu.Unlock()
	pu, err := u.pk.load(r.user)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cred, err := wa.CreateCredential(pu, c.data, parsed)
	if err != nil {
		u.o.Log.Info("webui: passkey refused", "user", r.user, "err", errText(err))
		jsonError(w, http.StatusBadRequest, "passkey refused: "+errText(err))
		return
	}
	if len(pu.Credentials) >= MaxPasskeys {
		jsonError(w, http.StatusConflict, fmt.Sprintf("no more passkeys: %d already", MaxPasskeys))
		return
	}
	pu.Credentials = append(pu.Credentials, *cred)
	if err := u.pk.save(pu); err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	u.o.Log.Info("webui: passkey added", "user", r.user)
	writeJSON(w, map[string]string{"next": "/passkeys?done=added"})
}

// loginBegin starts a sign-in with a passkey: options for any
// credential of this relying party, and the ceremony's id.
func (u *UI) loginBegin(w http.ResponseWriter, r *http.Request) {
	if u.pk == nil {
		jsonError(w, http.StatusNotFound, "passkeys are not kept on this node")
		return
	}
	wa, err := relyingParty(r, u.o.PasskeyNames)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	opts, data, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "passkeys: "+err.Error())
		return
	}
	id := token()
	now := u.o.Now()
	u.pk.mu.Lock()
	for k, c := range u.pk.ceremonies {
		if now.After(c.expires) {
			delete(u.pk.ceremonies, k)
		}
	}
	if len(u.pk.ceremonies) >= maxCeremonies {
		u.pk.mu.Unlock()
		jsonError(w, http.StatusServiceUnavailable, "too many passkey sign-ins under way: try again")
		return
	}
	u.pk.ceremonies[id] = &ceremony{data: *data, rpID: wa.Config.RPID, expires: now.Add(ceremonyTTL)}
	u.pk.mu.Unlock()
	writeJSON(w, map[string]any{"ceremony": id, "options": opts})
}

// loginFinish checks the assertion: the passkey names its user by
// handle, its signature is checked against the user's credential, whose
// sign count is then kept; and the user is signed in.
func (u *UI) loginFinish(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	id := r.PostFormValue("ceremony")
	var c *ceremony
	if u.pk != nil {
		u.pk.mu.Lock()
		c = u.pk.ceremonies[id]
		delete(u.pk.ceremonies, id)
		u.pk.mu.Unlock()
	}
	if c == nil || u.o.Now().After(c.expires) {
		jsonError(w, http.StatusBadRequest, "no passkey sign-in under way: begin again")
		return
	}
	wa, err := relyingParty(r, u.o.PasskeyNames)
	if err != nil || wa.Config.RPID != c.rpID {
		jsonError(w, http.StatusBadRequest, "passkey sign-in begun at another name")
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(strings.NewReader(r.PostFormValue("credential")))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "bad passkey: "+errText(err))
		return
	}
	u.pk.fileMu.Lock()
	defer u.pk.fileMu.Unlock()
	found, cred, err := wa.ValidatePasskeyLogin(func(rawID, handle []byte) (webauthn.User, error) {
		return u.pk.byHandle(handle)
	}, c.data, parsed)
	if err != nil {
		u.o.Log.Info("webui: passkey sign-in refused", "err", errText(err))
		jsonError(w, http.StatusUnauthorized, "passkey refused: "+errText(err))
		return
	}
	pu := found.(*passkeyUser)
	for i := range pu.Credentials {
		if string(pu.Credentials[i].ID) == string(cred.ID) {
			pu.Credentials[i].Authenticator = cred.Authenticator
		}
	}
	if err := u.pk.save(pu); err != nil {
		u.o.Log.Warn("webui: passkey sign count not kept", "user", pu.Name, "err", err)
	}
	u.o.Log.Info("webui: signed in", "user", pu.Name, "by", "passkey")
	u.newSession(w, pu.Name)
	writeJSON(w, map[string]string{"next": next(r)})
}

// errText is the most telling text of a WebAuthn error.
func errText(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}

// setSessionCeremony keeps a registration's ceremony with r's session.
func (u *UI) setSessionCeremony(r *request, c *ceremony) {
	if s := u.session(r.Request); s != nil {
		u.mu.Lock()
		s.ceremony = c
		u.mu.Unlock()
	}
}

// takeSessionCeremony returns r's session's ceremony, and forgets it.
func (u *UI) takeSessionCeremony(r *request) *ceremony {
	s := u.session(r.Request)
	if s == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	c := s.ceremony
	s.ceremony = nil
	return c
}

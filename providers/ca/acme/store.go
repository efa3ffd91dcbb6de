package acme

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cheshire/atomicfile"
)

// Object statuses (RFC 8555 section 7.1.6).
const (
	statusPending     = "pending"
	statusProcessing  = "processing"
	statusReady       = "ready"
	statusValid       = "valid"
	statusInvalid     = "invalid"
	statusDeactivated = "deactivated"
	statusExpired     = "expired"
	statusRevoked     = "revoked"
)

const challengeHTTP01 = "http-01"

// identifier is an ACME identifier: type "dns" or "ip".
type identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type account struct {
	ID         string          `json:"id"`
	Key        json.RawMessage `json:"key"` // canonical JWK
	Thumbprint string          `json:"thumbprint"`
	Contact    []string        `json:"contact,omitempty"`
	Status     string          `json:"status"`
	Created    time.Time       `json:"created"`
	Via        string          `json:"via,omitempty"` // how it was admitted: "eab KID", "key THUMBPRINT", "open"

	pub crypto.PublicKey
}

type order struct {
	ID          string       `json:"id"`
	Account     string       `json:"account"`
	Status      string       `json:"status"` // pending (then derived from the authorizations), processing, valid, invalid
	Expires     time.Time    `json:"expires"`
	Identifiers []identifier `json:"identifiers"`
	NotBefore   *time.Time   `json:"notBefore,omitempty"`
	NotAfter    *time.Time   `json:"notAfter,omitempty"`
	Authzs      []string     `json:"authorizations"`
	Cert        string       `json:"certificate,omitempty"`
	Error       *problem     `json:"error,omitempty"`
	Created     time.Time    `json:"created"`
}

type authz struct {
	ID         string       `json:"id"`
	Account    string       `json:"account"`
	Identifier identifier   `json:"identifier"`
	Status     string       `json:"status"` // pending, valid, invalid, deactivated (expired is derived)
	Expires    time.Time    `json:"expires"`
	Challenges []*challenge `json:"challenges"`
}

type challenge struct {
	Type      string     `json:"type"`
	Token     string     `json:"token"`
	Status    string     `json:"status"`
	Validated *time.Time `json:"validated,omitempty"`
	Error     *problem   `json:"error,omitempty"`
}

type certificate struct {
	ID      string     `json:"id"`
	Account string     `json:"account"`
	Order   string     `json:"order"`
	Serial  string     `json:"serial"` // hex
	Chain   string     `json:"chain"`  // PEM, leaf first
	Issued  time.Time  `json:"issued"`
	Revoked *time.Time `json:"revoked,omitempty"`
	Reason  int        `json:"reason,omitempty"`
}

// store keeps the ACME objects in memory and, if dir is set, as JSON
// files under dir: accounts/ID.json, orders/ID.json, authz/ID.json,
// certs/ID.json. The Server's mutex guards it.
type store struct {
	dir      string
	accounts map[string]*account
	byKey    map[string]string // thumbprint → account ID
	byEAB    map[string]string // external account key id → account ID
	orders   map[string]*order
	authzs   map[string]*authz
	certs    map[string]*certificate
	bySerial map[string]string // hex serial → certificate ID
}

const (
	kindAccounts = "accounts"
	kindOrders   = "orders"
	kindAuthzs   = "authz"
	kindCerts    = "certs"
)

func openStore(dir string) (*store, error) {
	st := &store{
		dir:      dir,
		accounts: make(map[string]*account),
		byKey:    make(map[string]string),
		byEAB:    make(map[string]string),
		orders:   make(map[string]*order),
		authzs:   make(map[string]*authz),
		certs:    make(map[string]*certificate),
		bySerial: make(map[string]string),
	}
	if dir == "" {
		return st, nil
	}
	for _, k := range []string{kindAccounts, kindOrders, kindAuthzs, kindCerts} {
		if err := os.MkdirAll(filepath.Join(dir, k), 0o700); err != nil {
			return nil, fmt.Errorf("making store directory: %w", err)
		}
	}
	err := loadKind(dir, kindAccounts, func(a *account) error {
		pub, err := parseJWK(a.Key)
		if err != nil {
			return fmt.Errorf("account %s: %w", a.ID, err)
		}
		a.pub = pub
		st.accounts[a.ID] = a
		st.byKey[a.Thumbprint] = a.ID
		if kid, ok := strings.CutPrefix(a.Via, viaEAB); ok {
			st.byEAB[kid] = a.ID
		}
		return nil
	})
	if err == nil {
		err = loadKind(dir, kindOrders, func(o *order) error {
			if o.Status == statusProcessing { // finalization cut short
				o.Status = statusInvalid
				o.Error = internal("the server restarted while issuing")
			}
			st.orders[o.ID] = o
			return nil
		})
	}
	if err == nil {
		err = loadKind(dir, kindAuthzs, func(a *authz) error {
			for _, c := range a.Challenges {
				if c.Status == statusProcessing { // validation cut short; may be asked again
					c.Status = statusPending
				}
			}
			st.authzs[a.ID] = a
			return nil
		})
	}
	if err == nil {
		err = loadKind(dir, kindCerts, func(c *certificate) error {
			st.certs[c.ID] = c
			st.bySerial[c.Serial] = c.ID
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("loading store %s: %w", dir, err)
	}
	return st, nil
}

// loadKind reads every dir/kind/ID.json into a new T and hands it to add.
func loadKind[T any](dir, kind string, add func(*T) error) error {
	ents, err := os.ReadDir(filepath.Join(dir, kind))
	if err != nil {
		return fmt.Errorf("reading %s: %w", kind, err)
	}
	for _, e := range ents {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() || !validID(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, kind, name))
		if err != nil {
			return fmt.Errorf("reading %s/%s: %w", kind, name, err)
		}
		v := new(T)
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decoding %s/%s: %w", kind, name, err)
		}
		if err := add(v); err != nil {
			return err
		}
	}
	return nil
}

// save writes v as dir/kind/id.json, atomically, mode 0600.
func (st *store) save(kind, id string, v any) error {
	if st.dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding %s %s: %w", kind, id, err)
	}
	if err := atomicfile.Write(filepath.Join(st.dir, kind, id+".json"), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving %s %s: %w", kind, id, err)
	}
	return nil
}

// remove deletes dir/kind/id.json.
func (st *store) remove(kind, id string) error {
	if st.dir == "" {
		return nil
	}
	err := os.Remove(filepath.Join(st.dir, kind, id+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s %s: %w", kind, id, err)
	}
	return nil
}

// authzStatus is a's status at now, with expiry applied.
func (a *authz) status(now time.Time) string {
	if (a.Status == statusPending || a.Status == statusValid) && !now.Before(a.Expires) {
		return statusExpired
	}
	return a.Status
}

// orderStatus is o's status at now, derived from its authorizations while
// it is pending. The caller holds the Server's mutex.
func (st *store) orderStatus(o *order, now time.Time) string {
	if o.Status != statusPending && o.Status != statusReady {
		return o.Status
	}
	if !now.Before(o.Expires) {
		return statusInvalid
	}
	ready := true
	for _, id := range o.Authzs {
		a := st.authzs[id]
		if a == nil {
			return statusInvalid
		}
		switch a.status(now) {
		case statusValid:
		case statusPending:
			ready = false
		default:
			return statusInvalid
		}
	}
	if ready {
		return statusReady
	}
	return statusPending
}

// gc forgets orders and authorizations that expired more than gcGrace
// ago, keeping valid orders and the authorizations they name. The caller
// holds the Server's mutex.
func (st *store) gc(now time.Time) error {
	cutoff := now.Add(-gcGrace)
	keep := make(map[string]bool)
	var errs []error
	for id, o := range st.orders {
		if o.Status != statusValid && o.Expires.Before(cutoff) {
			delete(st.orders, id)
			errs = append(errs, st.remove(kindOrders, id))
			continue
		}
		for _, a := range o.Authzs {
			keep[a] = true
		}
	}
	for id, a := range st.authzs {
		if !keep[id] && a.Expires.Before(cutoff) {
			delete(st.authzs, id)
			errs = append(errs, st.remove(kindAuthzs, id))
		}
	}
	return errors.Join(errs...)
}

// checkCaps refuses an order of the account that would bring its
// unfinished orders or pending authorizations (fresh more of them) over
// pol's caps, or all accounts' over the total caps. The caller holds the
// Server's mutex.
func (st *store) checkCaps(pol *Policy, acct string, fresh int, now time.Time) *problem {
	var orders, allOrders, authzs, allAuthzs int
	for _, o := range st.orders {
		if o.Status == statusValid {
			continue
		}
		allOrders++
		if o.Account == acct {
			orders++
		}
	}
	for _, a := range st.authzs {
		if a.status(now) != statusPending {
			continue
		}
		allAuthzs++
		if a.Account == acct {
			authzs++
		}
	}
	switch {
	case orders >= orDefault(pol.MaxOrders, DefaultMaxOrders):
		return rateLimited("the account has %d unfinished orders, the most allowed; finish them or let them expire", orders)
	case authzs+fresh > orDefault(pol.MaxAuthzs, DefaultMaxAuthzs):
		return rateLimited("the account has %d pending authorizations; %d more would pass the cap of %d", authzs, fresh, orDefault(pol.MaxAuthzs, DefaultMaxAuthzs))
	case allOrders >= orDefault(pol.MaxTotalOrders, DefaultMaxTotalOrders):
		return rateLimited("the server holds %d unfinished orders, the most allowed", allOrders)
	case allAuthzs+fresh > orDefault(pol.MaxTotalAuthzs, DefaultMaxTotalAuthzs):
		return rateLimited("the server holds %d pending authorizations, the most allowed", allAuthzs)
	}
	return nil
}

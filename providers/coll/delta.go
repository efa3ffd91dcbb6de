package coll

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"cheshire/nodekey"
	"cheshire/plan9"
)

// MaxValue is the most bytes a delta's value may hold, so that a delta
// line fits in one message (msg's 4 KiB).
const MaxValue = 1024

// Tombstone is the property of a delta that deletes its entity: the
// entity's deltas up to its time are left out of the views.
const Tombstone = "*"

// Errors of deltas, as they are counted (stats) and returned.
var (
	ErrBadDelta  = errors.New("coll: bad delta")
	ErrSignature = errors.New("coll: bad delta: signature does not verify")
	ErrFuture    = errors.New("coll: bad delta: time too far in the future")
	ErrBadValue  = errors.New("coll: bad value")
	ErrNoField   = errors.New("coll: no such property")
	ErrNoColl    = errors.New("coll: no such collection")
)

// A Delta is one change to a collection: entity's property set to value
// by author (a node key, z-base-32) at time (Unix nanoseconds), signed
// by author. The state of a collection is the set of its deltas.
type Delta struct {
	Coll, Entity, Prop, Value, Author string
	Time                              int64
	Sig                               []byte
}

// payload is what a delta's signature covers.
func (d *Delta) payload() []byte {
	b := []byte("cheshire coll delta v1\x00")
	for _, s := range []string{d.Coll, d.Entity, d.Prop, d.Value, d.Author, strconv.FormatInt(d.Time, 10)} {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// Hash identifies a delta: the hash of what its signature covers.
func (d *Delta) Hash() [32]byte { return sha256.Sum256(d.payload()) }

// Sign signs d with key, whose public half must be d.Author.
func (d *Delta) Sign(key ed25519.PrivateKey) {
	d.Sig = ed25519.Sign(key, d.payload())
}

// Verify checks d's signature against its author.
func (d *Delta) Verify() error {
	pub, err := nodekey.Decode(d.Author)
	if err != nil {
		return fmt.Errorf("%w: author: %v", ErrBadDelta, err)
	}
	if len(d.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, d.payload(), d.Sig) {
		return ErrSignature
	}
	return nil
}

// String is the delta as a line (without newline):
//
//	delta COLL ENTITY PROP VALUE AUTHOR TIME SIG
//
// VALUE quoted as rc(1) quotes (plan9.Quote), TIME in Unix nanoseconds,
// SIG in unpadded URL-safe base64.
func (d *Delta) String() string {
	return "delta " + d.Coll + " " + d.Entity + " " + d.Prop + " " + plan9.Quote(d.Value) + " " + d.Author + " " +
		strconv.FormatInt(d.Time, 10) + " " + base64.RawURLEncoding.EncodeToString(d.Sig)
}

// ParseDelta parses a delta line (String's form). It checks the form,
// not the signature (Verify) nor the schema.
func ParseDelta(line string) (*Delta, error) {
	w, err := plan9.Tokenize(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDelta, err)
	}
	if len(w) != 8 || w[0] != "delta" {
		return nil, fmt.Errorf("%w: want delta COLL ENTITY PROP VALUE AUTHOR TIME SIG", ErrBadDelta)
	}
	d := &Delta{Coll: w[1], Entity: w[2], Prop: w[3], Value: w[4], Author: w[5]}
	if !validName(d.Coll) || !validName(d.Entity) || !(validName(d.Prop) || d.Prop == Tombstone) {
		return nil, fmt.Errorf("%w: bad name", ErrBadDelta)
	}
	if err := checkValue(d.Value); err != nil {
		return nil, err
	}
	if _, err := nodekey.Decode(d.Author); err != nil {
		return nil, fmt.Errorf("%w: bad author: want a node key", ErrBadDelta)
	}
	if d.Time, err = strconv.ParseInt(w[6], 10, 64); err != nil || d.Time <= 0 {
		return nil, fmt.Errorf("%w: bad time %q", ErrBadDelta, w[6])
	}
	if d.Sig, err = base64.RawURLEncoding.DecodeString(w[7]); err != nil || len(d.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: bad signature encoding", ErrBadDelta)
	}
	return d, nil
}

// checkValue refuses a value too long or with a control character
// other than tab (a delta is one line).
func checkValue(v string) error {
	if len(v) > MaxValue {
		return fmt.Errorf("%w: value too long: %d bytes, at most %d", ErrBadValue, len(v), MaxValue)
	}
	for _, r := range v {
		if r < ' ' && r != '\t' || r == 0x7f {
			return fmt.Errorf("%w: control character", ErrBadValue)
		}
	}
	return nil
}

// validName reports whether s may name a collection, entity or
// property: 1 to 64 letters, digits, '.', '-' or '_', not starting
// with '.'.
func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

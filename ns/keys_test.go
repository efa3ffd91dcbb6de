package ns_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/styx"
)

// TestKeyService: an aname naming a key service reaches it with the
// proven key and the rest of the aname; any other aname of a key that is
// no user gets the (here empty) view of its exports.
func TestKeyService(t *testing.T) {
	t.Parallel()
	var gotKey, gotRest string
	m := ns.NewManager(ns.WithKeyService("#svc", func(ctx context.Context, key, rest string) (styx.File, error) {
		gotKey, gotRest = key, rest
		return nil, plan9.ErrNotFound
	}))
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AttachKey(t.Context(), pub, "#svc/a/b"); !errors.Is(err, plan9.ErrNotFound) {
		t.Fatalf("attach #svc/a/b: %v", err)
	}
	if gotKey != nodekey.Encode(pub) || gotRest != "/a/b" {
		t.Errorf("service got key %q rest %q", gotKey, gotRest)
	}
	gotKey = ""
	if _, err := m.AttachKey(t.Context(), pub, "#other"); !errors.Is(err, plan9.ErrPerm) || gotKey != "" {
		t.Errorf("attach #other: %v (service called with %q)", err, gotKey)
	}
}

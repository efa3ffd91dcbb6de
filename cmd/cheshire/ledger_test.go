package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/providers/ledger"
)

// TestEndpointResolver: a key with an endpoint in the ledger is found
// there, at its tls addresses; another key goes to the DHT.
func TestEndpointResolver(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	id, err := nodekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openCluster(dir, "127.0.0.1:0", "me", id, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	root, err := c.ledger.Attach(ctx, "me", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteFile(ctx, root, "/ctl", "bootstrap\n"); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	key := nodekey.Encode(pub)
	line, err := ledger.Sign(fmt.Sprintf("endpoint %s tcp!192.0.2.1!1,tls!192.0.2.1!5641 1", key), priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ledger.Submit(ctx, line); err != nil {
		t.Fatal(err)
	}
	errDHT := errors.New("asked the dht")
	resolve := endpointResolver(c.ledger.State(), func(context.Context, ed25519.PublicKey) ([]string, error) { return nil, errDHT })
	if got, err := resolve(ctx, pub); err != nil || !slices.Equal(got, []string{"tls!192.0.2.1!5641"}) {
		t.Errorf("registered key: %q %v", got, err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := resolve(ctx, other); err != errDHT {
		t.Errorf("unregistered key: %v, want the dht asked", err)
	}
}

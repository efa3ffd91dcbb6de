package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
)

// TestSignerFailure: the order becomes invalid with a problem.
func TestSignerFailure(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Signer = func(context.Context, *x509.CertificateRequest, time.Duration) ([]*x509.Certificate, error) {
			return nil, errors.New("CA offline")
		}
	})
	ctx := testCtx(t, 15*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("s.name.test"))
	if err != nil {
		t.Fatal(err)
	}
	e.solve(ctx, t, c, o)
	// x/crypto retries the 500, and the retry finds the order invalid.
	if _, _, err := c.CreateOrderCert(ctx, o.FinalizeURL, csrFor(t, ecKey(t), "s.name.test"), true); err == nil {
		t.Fatal("finalize succeeded without a signer")
	}
	o, err = c.GetOrder(ctx, o.URI)
	if err != nil || o.Status != xacme.StatusInvalid || acmeProblem(o.Error) != errServerInternal {
		t.Fatalf("order: %v %+v", err, o)
	}
}

// TestRedirect: validation follows a redirect on the same port.
func TestRedirect(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t, 15*time.Second)
	c, o, ch := e.redirectedChallenge(ctx, t, "r.name.test", func(int) string { return "/.well-known/acme-challenge/moved" })
	if _, err := c.Accept(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAuthorization(ctx, o.AuthzURLs[0]); err != nil {
		t.Fatalf("authorization through a redirect: %v", err)
	}
}

// TestCloseCancelsValidation: Close ends a validation stuck on a server
// that never answers.
func TestCloseCancelsValidation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hung := make(chan struct{})
	defer close(hung)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-hung; c.Close() }()
		}
	}()
	e := newEnv(t, func(o *Options) { o.HTTP01Port = ln.Addr().(*net.TCPAddr).Port })
	ctx := testCtx(t, 15*time.Second)
	c := e.client(ecKey(t))
	if _, err := c.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err != nil {
		t.Fatal(err)
	}
	o, err := c.AuthorizeOrder(ctx, xacme.DomainIDs("h.name.test"))
	if err != nil {
		t.Fatal(err)
	}
	z, err := c.GetAuthorization(ctx, o.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Accept(ctx, http01(t, z))
	if err != nil || ch.Status != xacme.StatusProcessing {
		t.Fatalf("Accept: %v %+v", err, ch)
	}
	done := make(chan struct{})
	start := time.Now()
	go func() { _ = e.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the validation")
	}
	t.Logf("Close took %v", time.Since(start))
}

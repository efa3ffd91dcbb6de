package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// FuzzCtl writes arbitrary control messages to ctl, through synth's
// parser and the command handlers: none may panic.
func FuzzCtl(f *testing.F) {
	c, err := Open(f.TempDir(), Options{Name: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	is, err := c.Issue("seed", []string{"seed.test"}, 0)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"issue www www.example.test 127.0.0.1 ttl=30d",
		"issue x a@b.test https://x.test/p ::1 *.w.test ttl=1h",
		"issue x ttl=",
		"issue '' ''",
		"revoke " + is.Serial() + " keyCompromise",
		"revoke 0x00:ff superseded",
		"renew seed",
		"renew ../../etc",
		"ssh-user a a,b ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl c",
		"ssh-host h principals=a,b ttl=1h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
		"ssh-user a ttl=-1h a x",
		"restore 'x'",
		"backup",
		"issue a\nrenew a\n",
		"'",
	} {
		f.Add(s)
	}
	ctl := synth.Ctl("ctl", 0600, c.commands(), nil)
	f.Fuzz(func(t *testing.T, line string) {
		ctx := context.Background()
		h, err := ctl.Handler().Open(ctx, styx.OWRITE)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(ctx, []byte(line), 0)
		h.Close(ctx)
		c.Status()
		for _, n := range c.Names() {
			if _, err := c.Info(n); err != nil {
				t.Fatalf("info %s: %v", n, err)
			}
		}
		if _, err := c.CRL(); err != nil {
			t.Fatalf("crl: %v", err)
		}
	})
}

// FuzzCSR writes arbitrary bytes to csr and reads the answer: no panic,
// and anything answered is a chain of this CA for a request that checks.
func FuzzCSR(f *testing.F) {
	c, err := Open(f.TempDir(), Options{Name: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "a.test"}, DNSNames: []string{"b.test"}}, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(der)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	h := synth.Query("csr", 0600, c.signCSR, synth.Gather(maxCSR)).Handler()
	root := c.Root()
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		hd, err := h.Open(ctx, styx.ORDWR)
		if err != nil {
			t.Fatal(err)
		}
		defer hd.Close(ctx)
		if _, err := hd.Write(ctx, data, 0); err != nil {
			return
		}
		buf := make([]byte, 8192)
		n, err := hd.Read(ctx, buf, 0)
		if err != nil {
			return
		}
		certs := parseCerts(buf[:n])
		if len(certs) != 2 {
			t.Fatalf("answered %d certificates", len(certs))
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool(root), Intermediates: pool(certs[1])}); err != nil {
			t.Fatalf("answer does not verify: %v", err)
		}
	})
}

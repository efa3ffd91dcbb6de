package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/styx"
)

func TestBackupRestore(t *testing.T) {
	a := newEnv(t)
	a.mustCtl("issue www www.example.test")
	a.mustCtl("revoke " + a.info("www", "serial") + " superseded")
	a.mustCtl("backup 'correct horse battery'")
	text := a.mustRead("backup")
	if !strings.HasPrefix(text, "-----BEGIN CHESHIRE CA BACKUP-----") || !strings.Contains(text, "Kdf: scrypt N=32768 r=8 p=1") {
		t.Fatalf("backup text:\n%s", text)
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Fatal("backup shows a private key in the clear")
	}

	// A fresh node, which has already made its own CA and a certificate.
	b := newEnv(t)
	b.mustCtl("issue api api.example.test 127.0.0.1 ttl=10d")
	freshRoot := b.mustRead("root.pem")
	if freshRoot == a.mustRead("root.pem") {
		t.Fatal("two CAs share a root")
	}
	if err := b.write("backup", text); err != nil {
		t.Fatal(err)
	}
	// A wrong passphrase changes nothing.
	err := b.ctl("restore 'wrong horse battery'")
	if err == nil || err.Error() != "restore: ca: wrong passphrase or damaged backup" {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if b.mustRead("root.pem") != freshRoot || !bytes.Equal(b.ca.RootPEM(), mustReadFile(t, filepath.Join(b.ca.Dir(), "root.pem"))) {
		t.Fatal("a refused restore changed the root")
	}
	// A damaged backup changes nothing.
	damaged := []byte(text)
	i := bytes.Index(damaged, []byte("\n\n")) + 20 // in the sealed body
	if damaged[i] == 'A' {
		damaged[i] = 'B'
	} else {
		damaged[i] = 'A'
	}
	if err := b.ca.Restore(damaged, "correct horse battery"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("damaged backup: %v", err)
	}
	if b.mustRead("root.pem") != freshRoot {
		t.Fatal("a damaged backup changed the root")
	}

	b.mustCtl("restore 'correct horse battery'")
	if got := b.mustRead("root.pem"); got != a.mustRead("root.pem") {
		t.Fatal("restored root differs")
	}
	if b.mustRead("intermediate.pem") != a.mustRead("intermediate.pem") || b.mustRead("ssh/ca.pub") != a.mustRead("ssh/ca.pub") {
		t.Fatal("restored intermediate or ssh key differs")
	}
	if !strings.Contains(b.mustRead("crl.pem"), "BEGIN X509 CRL") || !b.ca.IsRevoked(mustGet(t, a.ca, "www").Cert.SerialNumber) {
		t.Error("restored CA lost its revocations")
	}
	// The node's own certificate was issued again by the restored CA,
	// for the same names.
	is, _ := b.ca.Get("api")
	if _, err := is.Cert.Verify(x509.VerifyOptions{Roots: a.ca.RootPool(), Intermediates: pool(a.ca.Intermediate())}); err != nil {
		t.Errorf("api not reissued by the restored CA: %v", err)
	}
	if got := b.info("api", "sans"); got != "api.example.test 127.0.0.1" {
		t.Errorf("reissued sans %q", got)
	}
	// And it stays restored.
	c := openCA(t, b.ca.Dir(), nil)
	if !bytes.Equal(c.RootPEM(), a.ca.RootPEM()) || !bytes.Equal(c.SSHCAPub(), a.ca.SSHCAPub()) {
		t.Fatal("restore did not persist")
	}
	issued, err := c.Issue("new", []string{"new.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issued.Cert.Verify(x509.VerifyOptions{Roots: a.ca.RootPool(), Intermediates: pool(a.ca.Intermediate())}); err != nil {
		t.Errorf("certificate of the restored CA: %v", err)
	}
}

func TestBackupFileRefusals(t *testing.T) {
	e := newEnv(t)
	if err := e.write("backup", "not a backup\n"); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl("restore 'some passphrase'"); err == nil || !strings.Contains(err.Error(), "not a backup") {
		t.Errorf("restore of junk: %v", err)
	}
	// Others can neither read nor write the backup.
	other, err := e.root.Client().Attach(e.ctx, nil, "mallory", "")
	if err != nil {
		t.Fatal(err)
	}
	_, f, err := other.Walk(e.ctx, "backup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Clunk(e.ctx)
	if err := f.Open(e.ctx, styx.OREAD); err == nil {
		t.Error("another user opened backup")
	}
	// The files on disk hold no plain keys readable by others.
	filepath.Walk(e.ca.Dir(), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0077 != 0 {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Errorf("%s: mode %v holds a private key", p, fi.Mode())
			}
		}
		return nil
	})
}

func mustGet(t *testing.T, c *CA, name string) *Issued {
	t.Helper()
	is, ok := c.Get(name)
	if !ok {
		t.Fatalf("no certificate %s", name)
	}
	return is
}

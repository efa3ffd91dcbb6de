package ca

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// snapshot is the CA's state as files and memory show it.
type snapshot struct {
	names, ssh, eab []string
	root            []byte
	revoked         []byte
	status          string
	certs           map[string][]byte // name → cert.pem on disk
	backup          []byte
}

func snap(t *testing.T, e *env) snapshot {
	t.Helper()
	c := e.ca
	s := snapshot{names: c.Names(), ssh: c.SSHCertNames(), eab: c.EABKeyIDs(), root: c.RootPEM(),
		status: e.mustRead("ctl"), certs: map[string][]byte{}, backup: c.BackupText()}
	s.revoked, _ = os.ReadFile(filepath.Join(c.Dir(), revokedFile))
	ents, _ := os.ReadDir(filepath.Join(c.Dir(), certsDir))
	for _, d := range ents {
		s.certs[d.Name()], _ = os.ReadFile(filepath.Join(c.Dir(), certsDir, d.Name(), "cert.pem"))
	}
	if fromDisk := mustReadFile(t, filepath.Join(c.Dir(), rootCertFile)); !bytes.Equal(fromDisk, s.root) {
		t.Fatal("root.pem on disk is not the root in memory")
	}
	return s
}

func (a snapshot) diff(b snapshot) string {
	var d []string
	eq := func(what string, x, y []string) {
		if strings.Join(x, " ") != strings.Join(y, " ") {
			d = append(d, what+": "+strings.Join(x, " ")+" → "+strings.Join(y, " "))
		}
	}
	eq("certs", a.names, b.names)
	eq("ssh", a.ssh, b.ssh)
	eq("eab", a.eab, b.eab)
	if !bytes.Equal(a.root, b.root) {
		d = append(d, "root changed")
	}
	if !bytes.Equal(a.revoked, b.revoked) {
		d = append(d, "revoked file changed")
	}
	if a.status != b.status {
		d = append(d, "status changed:\n"+a.status+"→\n"+b.status)
	}
	if len(a.certs) != len(b.certs) {
		d = append(d, "cert directories changed")
	}
	for n, p := range a.certs {
		if !bytes.Equal(p, b.certs[n]) {
			d = append(d, "certs/"+n+" changed")
		}
	}
	if !bytes.Equal(a.backup, b.backup) {
		d = append(d, "backup changed")
	}
	return strings.Join(d, "\n")
}

// TestCtlAllOrNone: a write whose last line fails leaves the CA as it
// was, files and memory, whatever the lines before it changed; the error
// names the line. The same lines without the bad one all apply.
func TestCtlAllOrNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub := strings.TrimSpace(mustRun(t, "sh", "-c", "ssh-keygen -q -t ed25519 -N '' -f "+e.tmp+"/k && cat "+e.tmp+"/k.pub"))
	e.mustCtl("issue www www.example.test")
	e.mustCtl("issue old old.example.test")
	e.mustCtl("ssh-user alice alice " + pub)
	e.mustCtl("eab add kept")
	e.mustCtl("backup 'correct horse battery'")
	serial := e.info("old", "serial")

	// A backup of another CA, to restore.
	other := newEnv(t)
	other.mustCtl("backup 'another horse battery'")

	lines := []string{
		"issue new new.example.test",
		"renew www",
		"revoke " + serial + " superseded",
		"ssh-user alice alice,root " + pub,
		"ssh-host web " + pub,
		"eab add fresh",
		"eab remove kept",
		"backup 'other words entirely'",
	}
	for _, bad := range []string{"issue 'bad name!'", "revoke " + serial + " superseded"} {
		before := snap(t, e)
		err := e.ctl(strings.Join(append(lines, bad), "\n"))
		want := "line 9: "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("write ending in %q: %v, want an error starting %q", bad, err, want)
		}
		if d := before.diff(snap(t, e)); d != "" {
			t.Errorf("a failed write (%v) changed the CA:\n%s", err, d)
		}
		if e.info("old", "revoked") != "no" {
			t.Error("the revocation of a failed write stayed")
		}
	}

	// A restore undone: the other CA's backup in place, then a bad line.
	if err := e.write("backup", other.mustRead("backup")); err != nil {
		t.Fatal(err)
	}
	before := snap(t, e)
	if err := e.ctl("restore 'another horse battery'\nissue 'bad name!'"); err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
		t.Fatalf("restore then a bad line: %v", err)
	}
	if d := before.diff(snap(t, e)); d != "" {
		t.Errorf("a failed write with a restore changed the CA:\n%s", d)
	}
	// The CA on disk is still the one in memory, whole.
	again := openCA(t, e.ca.Dir(), nil)
	if !bytes.Equal(again.RootPEM(), before.root) || !bytes.Equal(again.SSHCAPub(), e.ca.SSHCAPub()) {
		t.Error("reopened, the CA is not the one before the failed restore")
	}

	// Without the bad line, every line applies.
	if err := e.ctl(strings.Join(lines, "\n")); err != nil {
		t.Fatalf("good write: %v", err)
	}
	if e.info("old", "revoked") != "yes" || e.info("new", "name") != "new" {
		t.Error("a good write did not apply")
	}
	if ids := strings.Join(e.ca.EABKeyIDs(), " "); ids != "fresh" {
		t.Errorf("eab key ids %q, want fresh", ids)
	}
}

package tests

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// httpsAddr returns the HTTPS host:port of the node mounted at m.
func httpsAddr(t *testing.T, m string) string {
	t.Helper()
	return httpsIn(t, sh(t, "cat "+m+"/node/addrs"))
}

// httpsAddr returns n's HTTPS host:port.
func (n *node) httpsAddr() string {
	n.t.Helper()
	addrs, err := n.run("", "9p", "read", "/node/addrs")
	if err != nil {
		n.t.Fatalf("/node/addrs: %v", err)
	}
	return httpsIn(n.t, addrs)
}

// httpsIn returns the HTTPS host:port among the dial strings of a
// /node/addrs.
func httpsIn(t testing.TB, addrs string) string {
	t.Helper()
	for _, a := range strings.Fields(addrs) {
		if rest, ok := strings.CutPrefix(a, "https!"); ok {
			host, port, _ := strings.Cut(rest, "!")
			return host + ":" + port
		}
	}
	t.Fatalf("no https address in /node/addrs")
	return ""
}

// ownerName is the name a node started by the tests gives its owner:
// $USER, else the current user's.
func ownerName(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// TestCAThroughFUSE: the CA's files with openssl and curl: a certificate
// issued by echo verifies against root.pem, a revocation shows in the
// CRL, and the node's own HTTPS listener is trusted through root.pem.
func TestCAThroughFUSE(t *testing.T) {
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	work := shortTemp(t)
	sh(t, "cp "+m+"/ca/root.pem "+m+"/ca/intermediate.pem "+work)
	sh(t, "echo 'issue www www.example.test 127.0.0.1 ttl=720h' > "+m+"/ca/ctl")
	if out := sh(t, "openssl verify -CAfile "+work+"/root.pem -untrusted "+work+"/intermediate.pem "+m+"/ca/certs/www/cert.pem"); !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify: %s", out)
	}
	info := sh(t, "cat "+m+"/ca/certs/www/info")
	var serial string
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(l, "serial "); ok {
			serial = v
		}
	}
	if serial == "" {
		t.Fatalf("no serial in info:\n%s", info)
	}
	sh(t, "echo 'revoke "+serial+" keyCompromise' > "+m+"/ca/ctl")
	if out := sh(t, "openssl crl -in "+m+"/ca/crl.pem -noout -text"); !strings.Contains(out, "Key Compromise") {
		t.Errorf("crl:\n%s", out)
	}
	if out := shFail(t, "echo 'issue' > "+m+"/ca/ctl"); out == "" {
		t.Error("bad ctl line: no error")
	}
	addr := httpsAddr(t, m)
	out, err := exec.Command("curl", "-sS", "--cacert", filepath.Join(work, "root.pem"), "https://"+addr+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cheshire node") {
		t.Errorf("curl --cacert root.pem https://%s/: %v %s", addr, err, out)
	}
	if out, err := exec.Command("curl", "-sS", "https://"+addr+"/").CombinedOutput(); err == nil {
		t.Errorf("curl without the root trusted the node: %s", out)
	}
	// The CA is a module: stopped, its files and its web handlers go.
	sh(t, "echo stop ca > "+m+"/modules/ctl")
	out, _ = exec.Command("curl", "-sS", "--cacert", filepath.Join(work, "root.pem"), "https://"+addr+"/ca/root.pem").CombinedOutput()
	if !strings.Contains(string(out), "stopped") {
		t.Errorf("web handler of a stopped module: %s", out)
	}
	sh(t, "echo start ca > "+m+"/modules/ctl")
	if out := sh(t, "curl -sS --cacert "+work+"/root.pem https://"+addr+"/ca/root.pem"); !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("root.pem over https: %s", out)
	}
}

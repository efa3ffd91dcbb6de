package tests

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestACMEPolicy: the node's ACME server under its owner's policy, with
// Debian's lego. With no binding lego gets no account; with a key id made
// in /ca/ctl it gets one but not a certificate for localhost (the node's
// own name) until the owner allows localhost in /modules/ca/config; then
// it does, and the certificate verifies against /ca's root. /ca/acme/policy
// shows the node's zones (its own ID.cheshire among them, reserved).
func TestACMEPolicy(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("lego"); err != nil {
		t.Skip("lego not installed (test.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	n := startNode(t, shortTemp(t), "--acme-http-port", port)
	nine := func(stdin string, args ...string) string {
		t.Helper()
		out, err := n.run(stdin, append([]string{"9p"}, args...)...)
		if err != nil {
			t.Fatalf("9p %s: %v %s", strings.Join(args, " "), err, out)
		}
		return out
	}
	work := shortTemp(t)
	for _, f := range []string{"root.pem", "intermediate.pem"} {
		if err := os.WriteFile(filepath.Join(work, f), []byte(nine("", "read", "/ca/"+f)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := httpsIn(t, nine("", "read", "/node/addrs"))
	nine("eab add lego\neab add spare\n", "write", "/ca/ctl")
	hmacOf := func(kid string) string {
		for line := range strings.SplitSeq(nine("", "read", "/ca/acme/eab/"+kid), "\n") {
			if v, ok := strings.CutPrefix(line, "hmac "); ok {
				return v
			}
		}
		t.Fatalf("/ca/acme/eab/%s has no hmac", kid)
		return ""
	}
	if pol := nine("", "read", "/ca/acme/policy"); !strings.Contains(pol, ".cheshire") || !strings.Contains(pol, "eab lego spare") {
		t.Errorf("/ca/acme/policy:\n%s", pol)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lego := func(path string, eab ...string) (string, error) {
		args := append([]string{"--server", "https://" + addr + "/acme/directory", "--accept-tos",
			"--email", "glenda@example.test", "--domains", "localhost", "--http", "--http.port", "127.0.0.1:" + port,
			"--path", filepath.Join(work, path)}, eab...)
		cmd := exec.CommandContext(ctx, "lego", append(args, "run")...)
		cmd.Env = append(os.Environ(), "LEGO_CA_CERTIFICATES="+filepath.Join(work, "root.pem"), "HOME="+work)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := lego("none"); err == nil || !strings.Contains(out, "External Account Binding") {
		t.Fatalf("lego without a binding: %v\n%s", err, out)
	}
	if out, err := lego("spare", "--eab", "--kid", "spare", "--hmac", hmacOf("spare")); err == nil || !strings.Contains(out, "rejectedIdentifier") {
		t.Fatalf("lego for localhost, not allowed: %v\n%s", err, out)
	}
	nine("acme allow localhost\n", "write", "/modules/ca/config")
	if out, err := lego("lego", "--eab", "--kid", "lego", "--hmac", hmacOf("lego")); err != nil {
		t.Fatalf("lego for localhost, allowed: %v\n%s", err, out)
	}
	crt := filepath.Join(work, "lego", "certificates", "localhost.crt")
	if out := sh(t, "openssl verify -CAfile "+work+"/root.pem -untrusted "+work+"/intermediate.pem "+crt); !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify of lego's certificate: %s", out)
	}
}

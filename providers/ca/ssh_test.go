package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cheshire/internal/testutil"

	"golang.org/x/crypto/ssh"
)

// sshKey makes a key pair with ssh-keygen and returns the private key's
// path and the public key's text.
func (e *env) sshKey(name string) (string, string) {
	e.t.Helper()
	p := filepath.Join(e.tmp, name)
	mustRun(e.t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@test", "-f", p)
	return p, strings.TrimSpace(string(mustReadFile(e.t, p+".pub")))
}

func TestSSHUserCertificate(t *testing.T) {
	e := newEnv(t)
	key, pub := e.sshKey("alice")
	e.mustCtl("ssh-user alice ttl=2h alice,deploy " + pub)
	cert := e.save("ssh/certs/alice-cert.pub", "alice-cert.pub")
	out := mustRun(t, "ssh-keygen", "-L", "-f", cert)
	for _, want := range []string{"Type: ssh-ed25519-cert-v01@openssh.com user certificate",
		"Key ID: \"alice\"", "alice\n", "deploy\n", "permit-pty", "permit-agent-forwarding"} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, out)
		}
	}
	// The signing CA is ssh/ca.pub.
	caPub := e.mustRead("ssh/ca.pub")
	fields := strings.Fields(caPub)
	if len(fields) < 2 || !strings.Contains(out, "Signing CA: ED25519") {
		t.Errorf("ca.pub %q; ssh-keygen -L:\n%s", caPub, out)
	}
	fp := mustRun(t, "ssh-keygen", "-l", "-f", e.save("ssh/ca.pub", "ca.pub"))
	if f := strings.Fields(fp); len(f) < 2 || !strings.Contains(out, f[1]) {
		t.Errorf("certificate not signed by ca.pub (%s):\n%s", fp, out)
	}
	_ = key

	// A host certificate, with its names.
	_, hostPub := e.sshKey("host")
	e.mustCtl("ssh-host web principals=web.example.test,10.0.0.2 " + hostPub)
	out = mustRun(t, "ssh-keygen", "-L", "-f", e.save("ssh/certs/web-cert.pub", "web-cert.pub"))
	for _, want := range []string{"host certificate", "web.example.test", "10.0.0.2"} {
		if !strings.Contains(out, want) {
			t.Errorf("host certificate lacks %q:\n%s", want, out)
		}
	}
	// Refusals.
	for line, want := range map[string]string{
		"ssh-user bob bob " + strings.TrimSpace(e.mustRead("ssh/certs/alice-cert.pub")): "not a certificate",
		"ssh-user bob 'bo b' " + pub:        "bad principal",
		"ssh-user bob ,, " + pub:            "bad principal",
		"ssh-user bob ttl=2000d bob " + pub: "out of range",
	} {
		if err := e.ctl(line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want %q", line, err, want)
		}
	}
}

// TestSSHDAcceptsCertificate runs a real sshd on loopback that trusts
// ssh/ca.pub for users, with a host certificate from the CA, and logs in
// with a user certificate from /ca, the client checking the host
// certificate against the CA.
func TestSSHDAcceptsCertificate(t *testing.T) {
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("no sshd")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh")
	}
	u, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	if u.Uid != "0" {
		// An unprivileged sshd can only log in its own user, and that
		// only where it may read the user's files; not tried here.
		t.Skip("sshd test needs root (it runs as root, with PermitRootLogin yes)")
	}
	// sshd running as root insists on its privilege separation
	// directory; the Debian package makes it at service start.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/run/sshd", 0755); err != nil {
			t.Skipf("no /run/sshd: %v", err)
		}
	}
	e := newEnv(t)
	dir := e.tmp
	hostKey, hostPub := e.sshKey("hostkey")
	e.mustCtl("ssh-host localhost principals=127.0.0.1,localhost ttl=1h " + hostPub)
	hostCert := e.save("ssh/certs/localhost-cert.pub", "hostkey-cert.pub")
	userKey, userPub := e.sshKey("id")
	e.mustCtl("ssh-user " + u.Username + " ttl=1h " + u.Username + " " + userPub)
	userCert := e.save("ssh/certs/"+u.Username+"-cert.pub", "user.cert") // not id-cert.pub, which ssh would load by itself
	caPub := e.save("ssh/ca.pub", "ca.pub")
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, []byte("@cert-authority * "+e.mustRead("ssh/ca.pub")), 0600)

	var port int
	var srv *exec.Cmd
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for attempt := 0; attempt < 5 && srv == nil; attempt++ {
		port = testutil.FreePort(t)
		cfg := filepath.Join(dir, "sshd_config")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
HostCertificate %s
TrustedUserCAKeys %s
AuthorizedKeysFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
StrictModes no
UsePAM no
PidFile none
LogLevel VERBOSE
`, port, hostKey, hostCert, caPub)), 0600)
		logs.Reset()
		cmd := exec.CommandContext(ctx, sshd, "-D", "-e", "-f", cfg)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("sshd: %v", err)
		}
		// Wait (bounded) for it to listen.
		up := false
		for i := 0; i < 100 && !up; i++ {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				up = true
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if up {
			srv = cmd
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	if srv == nil {
		t.Fatalf("sshd did not start:\n%s", logs.String())
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()

	login := func(cert string) (string, error) {
		args := []string{"-F", "/dev/null", "-i", userKey, "-o", "IdentitiesOnly=yes",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
			"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known,
			"-o", "GlobalKnownHostsFile=/dev/null",
			"-p", fmt.Sprint(port)}
		if cert != "" {
			args = append(args, "-o", "CertificateFile="+cert)
		}
		args = append(args, u.Username+"@127.0.0.1", "echo", "in-as-$(id -un)")
		return run(t, "ssh", args...)
	}
	out, err := login(userCert)
	if err != nil || !strings.Contains(out, "in-as-"+u.Username) {
		t.Fatalf("ssh with the certificate: %v\n%s\nsshd:\n%s", err, out, logs.String())
	}
	// Without the certificate the bare key is refused.
	// (The host certificate was accepted, so it is user authentication
	// that fails.)
	if out, err := login(""); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("ssh without a certificate: %v: %s", err, out)
	}
}

func TestSSHCertAPI(t *testing.T) {
	c := openCA(t, t.TempDir(), nil)
	_, pubText := (&env{t: t, tmp: t.TempDir()}).sshKey("k")
	pub, err := ParseSSHKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.SignSSHUser("k", []string{"k"}, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{IsUserAuthority: func(a ssh.PublicKey) bool {
		return bytes.Equal(a.Marshal(), c.SSHPublicKey().Marshal())
	}}
	if err := checker.CheckCert("k", cert); err != nil {
		t.Errorf("user cert: %v", err)
	}
	if err := checker.CheckCert("root", cert); err == nil {
		t.Error("cert valid for a principal it does not name")
	}
	if d := time.Unix(int64(cert.ValidBefore), 0).Sub(time.Now()); d < DefaultSSHUserTTL-time.Minute || d > DefaultSSHUserTTL {
		t.Errorf("user cert valid for %v", d)
	}
	if names := c.SSHCertNames(); len(names) != 1 || names[0] != "k" {
		t.Errorf("names %v", names)
	}
}

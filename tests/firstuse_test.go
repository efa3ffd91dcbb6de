package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"cheshire/internal/testutil"
)

// TestRefusedConfigWriteThroughFUSE: a refused config line fails the
// shell's echo itself (bash ignores close's error), as "Invalid
// argument", and the module's log names the line.
func TestRefusedConfigWriteThroughFUSE(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	m := mount(t, n)
	cfg := m + "/modules/dns/config"
	out, err := exec.Command("bash", "-c", "echo 'bogus key' > "+cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Invalid argument") {
		t.Errorf("echo 'bogus key' > dns/config: %v %s, want a failure, Invalid argument", err, out)
	}
	if got := sh(t, "cat "+m+"/modules/dns/log"); !strings.Contains(got, "config line 1 (bogus): unknown setting") {
		t.Errorf("dns log does not name the refused line:\n%s", got)
	}
	if got := sh(t, "cat "+cfg); got != "listen 127.0.0.1:0\n" {
		t.Errorf("config after a refused write: %q", got)
	}
	// A good line passes, and the module restarts with it.
	sh(t, "echo 'listen 127.0.0.1:0' > "+cfg+" && echo 'rrl off' >> "+cfg)
	if got := sh(t, "cat "+cfg); got != "listen 127.0.0.1:0\nrrl off\n" {
		t.Errorf("config after good writes: %q", got)
	}
	if got := sh(t, "cat "+m+"/modules/dns/status"); !strings.Contains(got, "state running\n") {
		t.Errorf("dns status:\n%s", got)
	}
	// The trusted keys are judged line by line too.
	out, err = exec.Command("bash", "-c", "echo notakey >> "+m+"/modules/trusted").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Invalid argument") {
		t.Errorf("echo notakey >> trusted: %v %s", err, out)
	}
}

// TestOccupiedPorts: with the DNS, DHT and HTTPS ports taken, serve
// says in one line each what did not start and what to set; dns and dht
// stay in sight, failed, with their errors; a listen line in their
// config starts them by themselves, and their status drops the error.
func TestOccupiedPorts(t *testing.T) {
	t.Parallel()
	dir := shortTemp(t)
	dnsPort, dhtPort, httpsPort := occupy(t, true, true), occupy(t, false, true), occupy(t, true, false)
	for _, mod := range []string{"dns", "dht"} { // no listen line: the flags say where
		os.MkdirAll(filepath.Join(dir, "modules", mod), 0700)
		os.WriteFile(filepath.Join(dir, "modules", mod, "config"), nil, 0600)
	}
	n := startNode(t, dir,
		"--dns-listen", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"--dht-listen", "udp!127.0.0.1!"+strconv.Itoa(dhtPort),
		"--https", "tcp!127.0.0.1!"+strconv.Itoa(httpsPort))
	testutil.WaitFor(t, "the node's serving line", func() bool { return strings.Contains(n.logs.String(), "cheshire node serving") })
	logs := n.logs.String()
	for _, want := range []string{
		"cheshire: dns not started: ", "set --dns-listen ADDR, or a listen line in /modules/dns/config",
		"cheshire: dht not started: ", "set --dht-listen ADDR, or a listen line in /modules/dht/config",
		"cheshire: https not started: ", "set --https tcp!HOST!PORT, or --https none",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve's output lacks %q:\n%s", want, logs)
		}
	}
	if c := strings.Count(logs, "address already in use"); c < 3 {
		t.Errorf("%d lines name the port in use, want 3:\n%s", c, logs)
	}
	read := func(p string) string {
		t.Helper()
		out, err := n.run("", "9p", "read", p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return out
	}
	ctl := read("/modules/ctl")
	for _, mod := range []string{"dns", "dht"} {
		if !strings.Contains(ctl, mod+" failed ") {
			t.Errorf("/modules/ctl does not show %s failed:\n%s", mod, ctl)
		}
		if st := read("/modules/" + mod + "/status"); !strings.Contains(st, "state failed\n") || !strings.Contains(st, "address already in use") {
			t.Errorf("%s status:\n%s", mod, st)
		}
	}
	if ls, err := n.run("", "9p", "ls", "/"); err != nil || !strings.Contains(ls, "dns") {
		t.Errorf("ls / with dns failed: %q %v, want dns listed", ls, err)
	}
	if _, err := n.run("", "9p", "ls", "/dns"); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("ls /dns of a failed module: %v, want its error", err)
	}
	// A listen line starts each again, by itself.
	for _, mod := range []string{"dns", "dht"} {
		if _, err := n.run("listen 127.0.0.1:0\n", "9p", "write", "/modules/"+mod+"/config"); err != nil {
			t.Errorf("config %s: %v", mod, err)
		}
		st := read("/modules/" + mod + "/status")
		if !strings.Contains(st, "state running\n") || !strings.Contains(st, "error none\n") {
			t.Errorf("%s status after a new listen line:\n%s", mod, st)
		}
	}
	if _, err := n.run("", "9p", "ls", "/dns"); err != nil {
		t.Errorf("ls /dns once running: %v", err)
	}
}

// TestModuleBuildOutsideRepo: an edited copy of an example, outside the
// repository, builds (offline: the binary carries the SDK), signs and
// loads.
func TestModuleBuildOutsideRepo(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	src := filepath.Join(shortTemp(t), "mykv")
	if err := os.CopyFS(src, os.DirFS(filepath.Join("..", "modules", "examples", "kv"))); err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(code), `"keys %d\n"`, `"entries %d\n"`, 1)
	if edited == string(code) {
		t.Fatal("the kv example no longer reads \"keys N\"")
	}
	os.WriteFile(filepath.Join(src, "main.go"), []byte(edited), 0644)
	mf, _ := os.ReadFile(filepath.Join(src, "manifest"))
	os.WriteFile(filepath.Join(src, "manifest"), []byte(strings.NewReplacer("name kv", "name mykv", "mount /n/kv", "mount /n/mykv").Replace(string(mf))), 0644)
	build := exec.Command(binary(t), "module", "build", src)
	build.Dir = filepath.Dir(src) // outside the repository: no go.mod above
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("module build outside the repository: %v\n%s", err, out)
	}
	pkgFile := filepath.Join(src, "mykv.pkg")
	if out, err := n.run("", "module", "sign", pkgFile); err != nil {
		t.Fatalf("module sign: %v\n%s", err, out)
	}
	if _, err := n.run("load mykv host:"+pkgFile+"\n", "9p", "write", "/modules/ctl"); err != nil {
		t.Fatalf("load: %v", err)
	}
	if got, err := n.run("", "9p", "read", "/n/mykv/ctl"); err != nil || got != "entries 0\n" {
		t.Errorf("edited module's ctl reads %q (%v), want entries 0", got, err)
	}
}

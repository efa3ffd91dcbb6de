package tests

// The READMEs' shell blocks run as a test, so that what they say and what
// the node does cannot drift apart (after CoreDNS's test/readme_test.go).
//
// Which blocks. Every fenced block tagged `sh` in every README.md of
// the tree runs.
// Blocks tagged otherwise (a plain fence, `console`, `go`) are
// illustrations and are not run; the provider READMEs are man pages whose
// EXAMPLES are written against namespace paths (/ca/ctl), as a Plan 9 user
// would type them, so they use plain fences. A block tagged `bash`,
// `shell` or `zsh` is refused: shell examples are tagged `sh`.
//
// Blocks that cannot run here carry, on the line just before the fence,
//
//	<!-- norun: REASON -->
//
// and are not run; a marker without a reason is refused. An unmarked `sh`
// block that reaches outside the machine (sudo, a public or wildcard
// address) is refused before anything runs, and one that fails fails the
// test: nothing is skipped silently.
//
// How they run. The blocks of one README run in order, top to bottom, as
// a reader follows it: each block is one `bash` process with
// `set -euo pipefail`, so its first failing line fails it (the error
// names the README line). Blocks share a working directory, a HOME and
// whatever they started (a node, a mount), not shell variables: a block
// must make sense pasted into a fresh terminal. Each block has a time
// limit (blockTimeout); waits for something asynchronous are written in
// the README itself as bounded polls, never sleeps.
//
// Where they run. A fresh temporary HOME (so ~/.cheshire and ~/n are the
// test's own), holding what a user's home has: ~/.ssh/id_ed25519 and
// ~/src. The working directory stands for a clone of the repository: a
// symbolic link to each top-level entry of this one, and ./cheshire linked
// to the binary under test (binary(t)). The Go build cache and module
// cache are the caller's. Nodes listen on loopback only, on free ports,
// through these substitutions in each block's text (substitutions, below):
//
//	go build -o cheshire ./cmd/cheshire  not run: ./cheshire is the binary under test
//	./cheshire serve (without --https)   ./cheshire serve --https tcp!127.0.0.1!8443 --acme-http-port ACME
//	--http run (lego)                    --http --http.port 127.0.0.1:ACME run (lego's http-01 server)
//	a port of readmePorts                a free loopback port, the same one throughout the README
//
// The README's node (~/.cheshire) has its dns and dht modules' listen
// addresses preset in its data directory, at the free ports for 5353 and
// 6881, as startNode presets them.
//
// At the end every FUSE mount under the temporary directories is undone
// (fusermount3 -u -z), and every process the blocks started is killed: the
// blocks' process groups, and any process carrying the test's marker in
// its environment (a background mount leaves the group with setsid).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cheshire/internal/testutil"
)

// blockTimeout bounds one block; a module build on a cold Go cache is the
// slowest.
const blockTimeout = 4 * time.Minute

// readmeFiles are the READMEs whose `sh` blocks run, relative to the
// repository root: every README.md of the tree (none in testdata).
func readmeFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "README.md" {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A mdBlock is a fenced block of a README.
type mdBlock struct {
	file  string
	line  int    // of the first line of the block's text
	tag   string // the fence's info string, first word
	norun string // the reason given by a norun marker
	text  string
}

var norunRE = regexp.MustCompile(`^<!--\s*norun:(.*?)-->\s*$`)

// parseBlocks returns the fenced blocks of a Markdown file.
func parseBlocks(file string, data []byte) ([]mdBlock, error) {
	var blocks []mdBlock
	var cur *mdBlock
	var body []string
	prev := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &mdBlock{file: file, line: n + 1}
			if f := strings.Fields(strings.TrimPrefix(trimmed, "```")); len(f) > 0 {
				cur.tag = f[0]
			}
			if m := norunRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.norun = strings.TrimSpace(m[1])
				if cur.norun == "" {
					return nil, fmt.Errorf("%s:%d: norun marker without a reason", file, n-1)
				}
			}
			body = nil
		case cur != nil && trimmed == "```":
			cur.text = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body = append(body, line)
		default:
			if m := norunRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil && trimmed != "" {
				return nil, fmt.Errorf("%s:%d: norun marker not just before a fence", file, n-1)
			}
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: fence not closed", file, cur.line-1)
	}
	return blocks, sc.Err()
}

// outsideRE finds what a block cannot do on a test machine: sudo, or an
// address that is neither loopback nor the documentation's record data.
var outsideRE = regexp.MustCompile(`\bsudo\b|!0\.0\.0\.0!|\b0\.0\.0\.0:|@(\d+\.\d+\.\d+\.\d+)|\b(192\.0\.2\.\d+|198\.51\.100\.\d+|203\.0\.113\.\d+):\d+`)

// outside reports why a block cannot run here, or "".
func outside(text string) string {
	for _, m := range outsideRE.FindAllStringSubmatch(text, -1) {
		if m[1] != "" && strings.HasPrefix(m[1], "127.") {
			continue
		}
		return m[0]
	}
	return ""
}

// readmeEnv is what the blocks of one README run with.
type readmeEnv struct {
	home, work string
	marker     string      // CHESHIRE_README_TEST's value, to find stray processes
	ports      map[int]int // README port: free port
	acme       int         // lego's http-01 port
	env        []string
	log        *os.File
	pgids      []int
}

// readmePorts are the port numbers the READMEs use, each mapped to a free
// port; true for those that need UDP too.
var readmePorts = map[int]bool{
	8443: false, 8444: false, // HTTPS
	5353: true, 5354: true, // DNS
	6881: true, 6882: true, // DHT
	5640: false, 5641: false, // 9P over TCP, over TLS
}

var portRE = regexp.MustCompile(`\b\d{4}\b`)

// substitutions rewrites a block's text for this machine; see the table
// at the top of the file. Lines keep their number.
func (e *readmeEnv) substitutions(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = strings.ReplaceAll(l, "go build -o cheshire ./cmd/cheshire", ": go build: ./cheshire is the binary under test")
		if strings.Contains(l, "./cheshire serve") && !strings.Contains(l, "--https") {
			l = strings.Replace(l, "./cheshire serve", "./cheshire serve --https 'tcp!127.0.0.1!8443'", 1)
		}
		l = strings.Replace(l, "./cheshire serve", "./cheshire serve --acme-http-port "+strconv.Itoa(e.acme), 1)
		l = strings.ReplaceAll(l, "--http run", "--http --http.port 127.0.0.1:"+strconv.Itoa(e.acme)+" run")
		lines[i] = portRE.ReplaceAllStringFunc(l, func(s string) string {
			if p, err := strconv.Atoi(s); err == nil && e.ports[p] != 0 {
				return strconv.Itoa(e.ports[p])
			}
			return s
		})
	}
	return strings.Join(lines, "\n")
}

// goEnv returns the caller's Go caches, which a temporary HOME would lose.
func goEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	v := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(v) != 3 {
		t.Fatalf("go env: %q", out)
	}
	return []string{"GOCACHE=" + v[0], "GOMODCACHE=" + v[1], "GOPATH=" + v[2]}
}

// newReadmeEnv makes the HOME, working directory and ports for one README.
func newReadmeEnv(t *testing.T, root string) *readmeEnv {
	t.Helper()
	base := shortTemp(t)
	e := &readmeEnv{home: filepath.Join(base, "h"), work: filepath.Join(base, "w"), marker: base,
		ports: map[int]int{}, acme: testutil.FreePort(t)}
	used := map[int]bool{e.acme: true}
	for p, udp := range readmePorts {
		for e.ports[p] == 0 || used[e.ports[p]] { // distinct, though each was closed
			if udp {
				e.ports[p] = freeDNSPort(t)
			} else {
				e.ports[p] = testutil.FreePort(t)
			}
		}
		used[e.ports[p]] = true
	}
	for _, d := range []string{e.work, filepath.Join(e.home, "src"), filepath.Join(e.home, ".ssh")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "readme@test", "-f", filepath.Join(e.home, ".ssh", "id_ed25519")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	// The modules' listen addresses, as startNode presets them.
	for mod, port := range map[string]int{"dns": e.ports[5353], "dht": e.ports[6881]} {
		p := filepath.Join(e.home, ".cheshire", "modules", mod, "config")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fmt.Appendf(nil, "listen 127.0.0.1:%d\n", port), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The working directory stands for a clone.
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		if strings.HasPrefix(de.Name(), ".") || de.Name() == "cheshire" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, de.Name()), filepath.Join(e.work, de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := filepath.Abs(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(e.work, "cheshire")); err != nil {
		t.Fatal(err)
	}
	e.log, err = os.Create(filepath.Join(base, "log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME" || k == "PWD" || k == "OLDPWD" || k == "CDPATH" || k == "BASH_ENV" || k == "ENV":
		case strings.HasPrefix(k, "CHESHIRE_") || strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "LEGO_"):
		default:
			e.env = append(e.env, kv)
		}
	}
	e.env = append(e.env, goEnv(t)...)
	e.env = append(e.env, "HOME="+e.home, "PWD="+e.work, "CHESHIRE_README_TEST="+e.marker)
	t.Cleanup(e.cleanup)
	return e
}

// run runs one block with bash; the error names the failing README line.
func (e *readmeEnv) run(b mdBlock) error {
	ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", readmePrologue(b)+e.substitutions(b.text))
	cmd.Dir = e.work
	cmd.Env = e.env
	cmd.Stdout, cmd.Stderr = e.log, e.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	fmt.Fprintf(e.log, "==== %s:%d\n", b.file, b.line)
	if err := cmd.Start(); err != nil {
		return err
	}
	e.pgids = append(e.pgids, cmd.Process.Pid)
	err := cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("%s:%d: block did not finish in %v", b.file, b.line, blockTimeout)
	}
	return err
}

// readmePrologue makes bash stop at the first failing line of the block
// and name it. The prologue is on the script's line 1 with the block's
// first line, so that $LINENO is the line within the block.
func readmePrologue(b mdBlock) string {
	return fmt.Sprintf(`set -euo pipefail; trap 'echo "readme: %s:$((LINENO + %d)): exit $?: $BASH_COMMAND" >&2' ERR; `, b.file, b.line-1)
}

// cleanup undoes the mounts and ends the processes the blocks started.
func (e *readmeEnv) cleanup() {
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for line := range strings.SplitSeq(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[1], e.marker+"/") {
				exec.Command("fusermount3", "-u", "-z", f[1]).Run()
			}
		}
	}
	var pids []int
	if dirs, err := os.ReadDir("/proc"); err == nil {
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
			if err == nil && bytes.Contains(env, []byte("\x00CHESHIRE_README_TEST="+e.marker+"\x00")) {
				pids = append(pids, pid)
			}
		}
	}
	for _, g := range e.pgids {
		syscall.Kill(-g, syscall.SIGTERM)
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for syscall.Kill(p, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, g := range e.pgids {
		syscall.Kill(-g, syscall.SIGKILL)
	}
	e.log.Close()
}

// TestReadme runs the READMEs' shell blocks; see the top of the file.
func TestReadme(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range readmeFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := parseBlocks(file, data)
		if err != nil {
			t.Fatal(err)
		}
		var run []mdBlock
		for _, b := range blocks {
			switch {
			case b.tag == "bash" || b.tag == "shell" || b.tag == "zsh":
				t.Errorf("%s:%d: shell block tagged %q: tag it sh", b.file, b.line-1, b.tag)
			case b.tag != "sh":
			case b.norun != "":
				t.Logf("%s:%d: not run: %s", b.file, b.line-1, b.norun)
			case outside(b.text) != "":
				t.Errorf("%s:%d: block cannot run here (%s): mark it <!-- norun: REASON -->", b.file, b.line-1, outside(b.text))
			default:
				run = append(run, b)
			}
		}
		if len(run) == 0 || t.Failed() {
			continue
		}
		t.Run(strings.ReplaceAll(file, "/", "_"), func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat("/dev/fuse"); err != nil {
				t.Skip("no /dev/fuse: the READMEs mount the namespace")
			}
			e := newReadmeEnv(t, root)
			for _, b := range run {
				start := time.Now()
				off, _ := e.log.Seek(0, io.SeekCurrent)
				err := e.run(b)
				t.Logf("%s:%d: %v", b.file, b.line-1, time.Since(start).Round(time.Millisecond))
				if testing.Verbose() {
					out, _ := os.ReadFile(e.log.Name())
					t.Logf("output:\n%s", out[min(off, int64(len(out))):])
				}
				if err != nil {
					out, _ := os.ReadFile(e.log.Name())
					t.Fatalf("%s:%d: %v\n%s", b.file, b.line-1, err, tail(out, 60))
				}
			}
		})
	}
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestReadmeRules checks that the rules above refuse what they should: a
// norun marker without a reason or away from a fence, an unclosed fence,
// and unmarked blocks that would leave the machine.
func TestReadmeRules(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"<!-- norun: -->\n```sh\nls\n```\n",
		"<!-- norun: why -->\ntext\n```sh\nls\n```\n",
		"```sh\nls\n",
	} {
		if _, err := parseBlocks("x.md", []byte(bad)); err == nil {
			t.Errorf("parseBlocks accepted %q", bad)
		}
	}
	blocks, err := parseBlocks("x.md", []byte("text\n\n<!-- norun: needs root -->\n```sh\nsudo ls\n```\n```\nplain\n```\n```sh\nls\n```\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mdBlock{
		{file: "x.md", line: 5, tag: "sh", norun: "needs root", text: "sudo ls\n"},
		{file: "x.md", line: 8, tag: "", text: "plain\n"},
		{file: "x.md", line: 11, tag: "sh", text: "ls\n"},
	}
	if fmt.Sprint(blocks) != fmt.Sprint(want) {
		t.Errorf("parseBlocks:\n got %v\nwant %v", blocks, want)
	}
	for text, want := range map[string]bool{
		"sudo update-ca-certificates":                true,
		"serve --listen 'tls!0.0.0.0!5641'":          true,
		"--dht-bootstrap 192.0.2.10:6881":            true,
		"dig @8.8.8.8 example.org":                   true,
		"dig @127.0.0.1 -p 5353 www.example.test":    false,
		"echo 'add www 300 A 192.0.2.1' > ctl":       false,
		"--dht-bootstrap 127.0.0.1:6881":             false,
		"echo 'listen 127.0.0.1:5354' > config":      false,
		"./cheshire 9p ls /node # pseudo-sudoers ok": false,
	} {
		if got := outside(text) != ""; got != want {
			t.Errorf("outside(%q) = %q, want refused %v", text, outside(text), want)
		}
	}
}

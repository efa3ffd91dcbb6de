package smarthttp

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/plan9"
)

// post sends body to service svc of repository name and returns the
// status and the response body.
func (e *env) post(name, svc string, body []byte, hdr ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.url("", name)+"/"+svc, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-"+svc+"-request")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func pkts(lines ...string) []byte {
	var b []byte
	for _, l := range lines {
		if l == "" {
			b = append(b, "0000"...)
		} else {
			b = pktAppend(b, l)
		}
	}
	return b
}

// emptyPack is a pack of no objects.
func emptyPack() []byte {
	p := []byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00")
	sum := sha1.Sum(p)
	return append(p, sum[:]...)
}

// packOf returns the pack git makes of the objects of rev in dir.
func (e *env) packOf(dir, rev string) []byte {
	e.t.Helper()
	cmd := exec.Command(gitBin, "pack-objects", "--stdout", "--revs", "-q")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(rev + "\n")
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

const zero = "0000000000000000000000000000000000000000"

// TestBadPush sends pushes that must change nothing: to an unknown
// repository, with a corrupt or truncated pack, a truncated command
// list, a stale old hash (alone and beside a good command), and a body
// over the limit.
func TestBadPush(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) { o.MaxPack = 1 << 20 })
	bare := e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "push", "-q", e.url("", "r"), "main")
	c2 := e.commit(work, "a", "two\n")
	before := e.refs("r")
	unchanged := func(what string) {
		t.Helper()
		if got := e.refs("r"); got != before {
			t.Fatalf("%s changed the refs:\n%s\nwas\n%s", what, got, before)
		}
		tmp, _ := filepath.Glob(filepath.Join(bare, "objects", "pack", "tmp_*"))
		if len(tmp) > 0 {
			t.Fatalf("%s left %v", what, tmp)
		}
	}

	e.fails("not found", work, "push", e.url("", "nope"), "main")

	pack := e.packOf(work, c2)
	cmds := pkts(c1+" "+c2+" refs/heads/main\x00report-status side-band-64k", "")
	corrupt := bytes.Clone(pack)
	for i := 20; i < len(corrupt)-20; i += 7 {
		corrupt[i] ^= 0x55
	}
	for _, tc := range []struct {
		name, pack string
	}{
		{"corrupt pack", string(corrupt)},
		{"truncated pack", string(pack[:len(pack)/2])},
		{"no pack", ""},
		{"not a pack", "hello, world"},
	} {
		code, body := e.post("r", svcReceive, append(bytes.Clone(cmds), tc.pack...))
		if code != 200 || !strings.Contains(body, "unpack git: ") || !strings.Contains(body, "ng refs/heads/main unpacker error") {
			t.Errorf("%s: %d %q", tc.name, code, body)
		}
		unchanged(tc.name)
	}

	code, body := e.post("r", svcReceive, cmds[:20])
	if code != 400 || body != "git: truncated request\n" {
		t.Errorf("truncated commands: %d %q", code, body)
	}
	unchanged("truncated commands")

	// Stale old hash: a push is all or nothing.
	stale := pkts(c2+" "+c1+" refs/heads/main\x00report-status", zero+" "+c1+" refs/heads/y", "")
	code, body = e.post("r", svcReceive, append(stale, emptyPack()...))
	if code != 200 || !strings.Contains(body, "ng refs/heads/main stale info") || !strings.Contains(body, "ng refs/heads/y atomic push failed") {
		t.Errorf("stale push: %d %q", code, body)
	}
	unchanged("stale push")
	del := pkts(c2+" "+zero+" refs/heads/main\x00report-status", "")
	if code, body = e.post("r", svcReceive, del); !strings.Contains(body, "ng refs/heads/main stale info") {
		t.Errorf("stale delete: %d %q", code, body)
	}
	unchanged("stale delete")
	missing := pkts(zero+" "+c2+" refs/heads/y\x00report-status", "")
	if code, body = e.post("r", svcReceive, append(missing, emptyPack()...)); !strings.Contains(body, "ng refs/heads/y missing object") {
		t.Errorf("missing object: %d %q", code, body)
	}
	unchanged("missing object")

	// A pack whose one blob, stored uncompressed, passes MaxPack while
	// it is read; and garbage as long, refused at its first bytes.
	var blob bytes.Buffer
	blob.WriteString("PACK\x00\x00\x00\x02\x00\x00\x00\x01")
	size := 2 << 20
	blob.Write([]byte{0x30 | 0x80 | byte(size&0x0f), byte(size>>4&0x7f | 0x80), byte(size>>11&0x7f | 0x80), byte(size >> 18)})
	zw, _ := zlib.NewWriterLevel(&blob, zlib.NoCompression)
	zw.Write(make([]byte, size))
	zw.Close()
	if code, body = e.post("r", svcReceive, append(bytes.Clone(cmds), blob.Bytes()...)); !strings.Contains(body, "unpack git: request body too large") {
		t.Errorf("big push: %d %q", code, body)
	}
	unchanged("big push")
	if code, body = e.post("r", svcReceive, append(bytes.Clone(cmds), make([]byte, 2<<20)...)); !strings.Contains(body, "unpack git: bad pack: no header") {
		t.Errorf("big garbage push: %d %q", code, body)
	}
	unchanged("big garbage push")

	// The same commands, right, succeed together.
	good := pkts(zero+" "+c1+" refs/heads/y\x00report-status", c1+" "+c2+" refs/heads/main", "")
	code, body = e.post("r", svcReceive, append(good, pack...))
	if code != 200 || body != string(pkts("unpack ok\n", "ok refs/heads/y\n", "ok refs/heads/main\n", "")) {
		t.Errorf("good push: %d %q", code, body)
	}
	if e.rev(bare, "main") != c2 || e.rev(bare, "y") != c1 {
		t.Errorf("good push: refs\n%s", e.refs("r"))
	}
}

// TestBadFetch sends fetch requests that must be refused, and one
// gzipped request that must be served.
func TestBadFetch(t *testing.T) {
	e := newEnv(t, nil)
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "push", "-q", e.url("", "r"), "main")

	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"not our ref", pkts("want "+strings.Repeat("1", 40)+"\n", "", "done\n"), "ERR git: not our ref"},
		{"truncated", pkts("want " + c1 + "\n")[:30], "ERR git: truncated request"},
		{"garbage", []byte("zzzzzzzz"), "ERR git: bad pkt-line length"},
		{"bad line", pkts("wont "+c1+"\n", ""), "ERR git: unexpected line"},
		{"probe", pkts(""), ""},
	} {
		code, body := e.post("r", svcUpload, tc.body)
		if code != 200 || !strings.Contains(body, tc.want) || tc.want == "" && body != "" {
			t.Errorf("%s: %d %q", tc.name, code, body)
		}
	}

	var z bytes.Buffer
	gw := gzip.NewWriter(&z)
	gw.Write(pkts("want "+c1+" ofs-delta\n", "", "have "+strings.Repeat("2", 40)+"\n", "done\n"))
	gw.Close()
	code, body := e.post("r", svcUpload, z.Bytes(), "Content-Encoding", "gzip")
	if code != 200 || !strings.HasPrefix(body, "0008NAK\nPACK") {
		t.Errorf("gzipped fetch: %d %.40q", code, body)
	}
	code, body = e.post("r", svcUpload, []byte("not gzip"), "Content-Encoding", "gzip")
	if code != 400 || body != "git: bad gzip body\n" {
		t.Errorf("bad gzip: %d %q", code, body)
	}
}

// TestAuth checks that reads are open, that a push without credentials
// is asked for them (401), one with a user not allowed to write is
// refused (403), and one with good credentials succeeds.
func TestAuth(t *testing.T) {
	var users []string
	authorize := func(r *http.Request, repo string, write bool) (string, error) {
		user, pass, ok := r.BasicAuth()
		if !write {
			return user, nil
		}
		switch {
		case !ok:
			return "", errors.New("git: authentication required")
		case pass != "secret":
			return user, errors.New("git: bad credentials")
		case user != "alice":
			return user, fmt.Errorf("git: %s may not push: %w", user, plan9.ErrPerm)
		}
		users = append(users, user)
		return user, nil
	}
	e := newEnv(t, authorize)
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	e.commit(work, "a", "one\n")

	resp, err := e.srv.Client().Get(e.url("", "r") + "/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="cheshire"` || string(b) != "git: authentication required\n" {
		t.Errorf("no credentials: %d %q %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
	}

	e.fails("could not read Username", work, "push", e.url("", "r"), "main")
	e.fails("Authentication failed", work, "push", e.url("alice:wrong", "r"), "main")
	e.fails("403", work, "push", e.url("bob:secret", "r"), "main")
	if got := e.refs("r"); got != "" {
		t.Fatalf("refused pushes changed refs:\n%s", got)
	}
	e.ok(work, "push", "-q", e.url("alice:secret", "r"), "main")
	if len(users) == 0 || users[0] != "alice" {
		t.Errorf("authorized users %q", users)
	}
	e.ok("", "clone", "-q", e.url("", "r"), filepath.Join(t.TempDir(), "c"))

	// With no Authorize, reads are allowed and writes refused.
	e2 := newEnv(t, nil, func(o *Options) { o.Authorize = nil })
	e2.bare("r")
	e2.fails("403", work, "push", e2.url("", "r"), "main")
	if _, err := os.Stat(filepath.Join(e2.root, "r.git")); err != nil {
		t.Fatal(err)
	}
}

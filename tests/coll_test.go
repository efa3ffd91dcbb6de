package tests

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cheshire/internal/testutil"
	"cheshire/nodekey"
	"cheshire/providers/coll"
)

// collStat is a line of /coll/NAME/stats.
func (m *member) collStat(name, field string) string {
	m.t.Helper()
	out, err := m.run("", "9p", "read", "/coll/"+name+"/stats")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == field {
			return v
		}
	}
	return ""
}

// waitConverged waits until every node holds want deltas of collection
// name, with one sum.
func waitConverged(t *testing.T, nodes []*member, name string, want int) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%d deltas of %s on every node, one sum", want, name), func() bool {
		sum := ""
		for i, m := range nodes {
			if m.collStat(name, "deltas") != fmt.Sprint(want) {
				return false
			}
			s := m.collStat(name, "sum")
			if i > 0 && s != sum {
				return false
			}
			sum = s
		}
		return true
	})
}

// mkdir makes the directory p in m's namespace (an entity, in /coll),
// unless it is there (made by a delta from a peer).
func (m *member) mkdir(p string) {
	m.t.Helper()
	if _, err := m.run("", "9p", "create", p+"/"); err != nil && !strings.Contains(err.Error(), "already exists") {
		m.t.Fatalf("mkdir %s: %v", p, err)
	}
}

// TestCollNodes: three nodes write one property at once and converge
// to one value; the lossless view lists every delta; a node killed
// with SIGKILL keeps what it acknowledged and catches up when it
// comes back; a forged delta, one from the future and a type change
// with data present are refused; the HTTP API reads, writes and
// deletes with the files' permissions.
func TestCollNodes(t *testing.T) {
	t.Parallel()
	cl := msgCluster(t, 3)
	for _, m := range cl.nodes {
		if err := m.ctl("/coll/ctl", "create c n:int tot:int:sum tags:list"); err != nil {
			t.Fatal(err)
		}
	}
	waitSubscribers(t, cl, "coll.c")
	ctx := t.Context()
	for _, m := range cl.nodes {
		m.mkdir("/coll/c/entities/e")
	}

	// Concurrent writes of one property from all three.
	const writes = 15
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, m := range cl.nodes {
		root := m.client(userName(t))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range writes {
				for _, p := range []string{"n", "tot"} {
					if err := writeLine(ctx, root, "/coll/c/entities/e/"+p, fmt.Sprint(i*100+j)); err != nil {
						t.Errorf("node %d write %d: %v", i, j, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	tw := time.Since(t0)
	waitConverged(t, cl.nodes, "c", 3*writes*2)
	t.Logf("%d concurrent writes acknowledged in %v; every node held them all %v later", 3*writes*2, tw.Round(time.Millisecond), (time.Since(t0) - tw).Round(time.Millisecond))
	n0 := cl.nodes[0].read("/coll/c/entities/e/n")
	sum := 0
	for i := range 3 {
		for j := range writes {
			sum += i*100 + j
		}
	}
	for _, m := range cl.nodes {
		if n := m.read("/coll/c/entities/e/n"); n != n0 {
			t.Errorf("%s reads n %q, %s %q", m.key[:8], n, cl.nodes[0].key[:8], n0)
		}
		if tot := m.read("/coll/c/entities/e/tot"); tot != fmt.Sprintln(sum) {
			t.Errorf("%s reads tot %q, want %d", m.key[:8], tot, sum)
		}
		if h := m.read("/coll/c/history/e/n"); strings.Count(h, "\n") != 3*writes {
			t.Errorf("%s: history of n has %d lines, want %d", m.key[:8], strings.Count(h, "\n"), 3*writes)
		}
	}
	t.Logf("3 nodes x %d writes of n and tot converged on n=%s", writes, strings.TrimSpace(n0))

	// c is killed right after a write it acknowledged; a and b write on.
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	c.mkdir("/coll/c/entities/last")
	if err := c.ctl("/coll/c/entities/last/n", "42"); err != nil {
		t.Fatal(err)
	}
	c.kill()
	for _, m := range []*member{a, b} {
		m.mkdir("/coll/c/entities/after")
		for j := range 5 {
			if err := m.ctl("/coll/c/entities/after/tags", fmt.Sprintf("%s-%d", m.key[:4], j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.restart()
	tr := time.Now()
	c.published(1)
	if got := c.read("/coll/c/entities/last/n"); got != "42\n" {
		t.Errorf("c's acknowledged write after SIGKILL: %q", got)
	}
	waitConverged(t, cl.nodes, "c", 3*writes*2+1+10)
	t.Logf("c caught up %v after its restart (its DHT record republished in between)", time.Since(tr).Round(time.Millisecond))
	if tags := c.read("/coll/c/entities/after/tags"); strings.Count(tags, "\n") != 10 {
		t.Errorf("c's union of tags after catching up:\n%s", tags)
	}

	// Bad input: a forged signature, a time far ahead, a type change.
	pub, priv, _ := ed25519.GenerateKey(nil)
	d := &coll.Delta{Coll: "c", Entity: "e", Prop: "n", Value: "999", Author: nodekey.Encode(pub), Time: time.Now().UnixNano()}
	d.Sign(priv)
	d.Value = "1000" // forged: the signature was of 999
	if err := a.ctl("/coll/c/deltas", d.String()); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged delta: %v", err)
	}
	d.Time = time.Now().Add(time.Hour).UnixNano()
	d.Sign(priv)
	if err := a.ctl("/coll/c/deltas", d.String()); err == nil || !strings.Contains(err.Error(), "future") {
		t.Errorf("delta from the future: %v", err)
	}
	if a.collStat("c", "bad-signature") != "1" || a.collStat("c", "future") != "1" {
		t.Errorf("a's stats:\n%s", a.read("/coll/c/stats"))
	}
	// The same forgery sent by b over the collection's topic.
	d.Time = time.Now().UnixNano()
	d.Sign(priv)
	d.Value = "1001"
	if err := b.ctl("/msg/coll.c/send", a.key+" "+d.String()); err != nil {
		t.Fatalf("b sends a forged delta: %v", err) // msg takes it in; coll refuses it
	}
	testutil.WaitFor(t, "a to count the forgery b sent", func() bool { return a.collStat("c", "bad-signature") == "2" })
	if got := a.read("/coll/c/entities/e/n"); got != n0 {
		t.Errorf("view after refused deltas: %q, want %q", got, n0)
	}
	if err := a.ctl("/coll/ctl", "schema c n:string"); err == nil || !strings.Contains(err.Error(), "may not change") {
		t.Errorf("type change with data present: %v", err)
	}
	if err := a.ctl("/coll/ctl", "schema c note:string"); err != nil {
		t.Errorf("adding a field: %v", err)
	}

	// HTTP CRUD with a client certificate from a's /ca.
	owner := ownerName(t)
	client := func(user string) *http.Client {
		a.ctl("/ca/ctl", "issue "+user)
		cert, err := tls.X509KeyPair([]byte(a.read("/ca/certs/"+user+"/cert.pem")), []byte(a.read("/ca/certs/"+user+"/key.pem")))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(a.read("/ca/root.pem")))
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	}
	base := "https://" + a.httpsAddr() + "/api/coll/c/"
	do := func(cl *http.Client, method, url, body string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, url, bytes.NewReader([]byte(body)))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	hc := client(owner)
	if code, body := do(hc, "PUT", base+"web", `{"n": 7, "tags": ["x", "y"], "note": "from the web"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body := do(hc, "GET", base+"web", "")
	var ent map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &ent) != nil || ent["n"] != 7.0 || fmt.Sprint(ent["tags"]) != "[x y]" || ent["note"] != "from the web" {
		t.Errorf("GET: %d %s", code, body)
	}
	testutil.WaitFor(t, "b to have the web entity", func() bool { return b.read("/coll/c/entities/web/n") == "7\n" })
	if code, body := do(hc, "PUT", base+"web", `{"n": "seven"}`); code != 400 {
		t.Errorf("PUT of a bad value: %d %s", code, body)
	}
	if code, body := do(hc, "PUT", base+"web", `{"nope": 1}`); code != 400 {
		t.Errorf("PUT of an unknown property: %d %s", code, body)
	}
	if code, body := do(hc, "GET", "https://"+a.httpsAddr()+"/api/coll/nosuch/web", ""); code != 404 {
		t.Errorf("GET of an unknown collection: %d %s", code, body)
	}
	if code, body := do(client("bob"), "PUT", base+"web", `{"n": 8}`); code != 403 {
		t.Errorf("PUT by bob, who may not write the files: %d %s", code, body)
	}
	if code, body := do(hc, "DELETE", base+"web", ""); code != 204 {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, body := do(hc, "GET", base+"web", ""); code != 404 {
		t.Errorf("GET after DELETE: %d %s", code, body)
	}
	testutil.WaitFor(t, "the deletion to reach b", func() bool {
		_, err := b.run("", "9p", "read", "/coll/c/entities/web/n")
		return err != nil && strings.Contains(err.Error(), "not found")
	})
	if h := b.read("/coll/c/history/web/deleted"); strings.Count(h, "\n") != 1 {
		t.Errorf("b's tombstones of web: %q", h)
	}
}

package webui

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"cheshire/styx"
)

// TestCluster: /cluster.json merges this node, its imports with their
// connections' state and the ledger's members, by key; a namespace
// without /ledger gives this node and its imports.
func TestCluster(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.signIn()
	var got struct{ Nodes []clusterNode }
	get := func() {
		t.Helper()
		code, body := e.get("/cluster.json")
		if code != 200 {
			t.Fatalf("/cluster.json: %d\n%s", code, body)
		}
		got.Nodes = nil
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
	}
	get()
	if len(got.Nodes) != 1 || !got.Nodes[0].Self {
		t.Fatalf("a namespace with nothing to tell: %+v", got.Nodes)
	}
	for _, d := range []string{"node", "ns", "ledger"} {
		_, f, err := e.root.Walk(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		nf, _, err := f.Create(context.Background(), d, styx.DMDIR|0o755, styx.OREAD)
		if err != nil {
			t.Fatal(err)
		}
		nf.Clunk()
	}
	e.write("/node/id", "keya\n")
	e.write("/ns/imports", "import keyb /n/b # state up since 2026-01-01T00:00:00Z\nimport keyc /n/c # state connecting since 2026-01-01T00:00:00Z\n")
	e.write("/ledger/status", "leader keya\nmember keya voter 127.0.0.1:1 self\nmember keyb voter 127.0.0.1:2 ok\n")
	get()
	want := []clusterNode{{ID: "keya", Self: true, Member: "voter", Raft: "self", Leader: true},
		{ID: "keyb", Import: "/n/b", State: "up", Member: "voter", Raft: "ok"},
		{ID: "keyc", Import: "/n/c", State: "connecting"}}
	if len(got.Nodes) != len(want) {
		t.Fatalf("nodes %+v, want %+v", got.Nodes, want)
	}
	for i := range want {
		if got.Nodes[i] != want[i] {
			t.Errorf("node %d: %+v, want %+v", i, got.Nodes[i], want[i])
		}
	}
}

func TestParseCluster(t *testing.T) {
	t.Parallel()
	imports := "import -a keyb /pub /n/b # state up since 2026-01-01T00:00:00Z addr tls!10.0.0.2!5641\n" +
		"import keyc /n/c # state down since 2026-01-01T00:00:00Z err 'no route to host'\n" +
		"import '/n/x # odd\n" +
		"bind /a /b\n"
	got := parseImports(imports)
	if len(got) != 2 || got[0] != (clusterNode{ID: "keyb", Import: "/n/b", State: "up"}) || got[1] != (clusterNode{ID: "keyc", Import: "/n/c", State: "down"}) {
		t.Fatalf("parseImports: %+v", got)
	}
	status := "state leader\nid keya\naddr 127.0.0.1:1\nleader keya\nterm 2\n" +
		"member keya voter 127.0.0.1:1 self\nmember keyb nonvoter 10.0.0.2:7000 ok\nmember keyd voter 10.0.0.4:7000 unreachable since 5s\n"
	members := parseMembers(status)
	if len(members) != 3 || !members[0].Leader || members[1].Member != "nonvoter" || members[2].Raft != "unreachable since 5s" {
		t.Fatalf("parseMembers: %+v", members)
	}
}

// FuzzParseCluster: whatever /ns/imports and /ledger/status hold, the
// parsers give nodes with a key, and never panic.
func FuzzParseCluster(f *testing.F) {
	f.Add("import -a keyb /pub /n/b # state up since x\n", "member keya voter 127.0.0.1:1 self\nleader keya\n")
	f.Add("import\nimport -a\nimport k # state\n", "member a b c\n")
	f.Fuzz(func(t *testing.T, imports, status string) {
		for _, n := range append(parseImports(imports), parseMembers(status)...) {
			if n.ID == "" || strings.Contains(n.ID, "\n") {
				t.Fatalf("node without a key: %+v", n)
			}
		}
	})
}

// The live graphs: the node's request rates over the last minutes,
// drawn in the page from /node/stats read once a second; and the
// cluster, this node with its imports (/ns/imports) and the ledger's
// members (/ledger/status), drawn as an SVG from /cluster.json.

package webui

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
)

func (u *UI) graph(w http.ResponseWriter, r *request) {
	u.render(w, http.StatusOK, "graph.html", map[string]any{"User": r.user, "CSRF": r.csrf})
}

// stats answers /stats.json: the time and /node/stats's counts, as the
// signed-in user's namespace shows them.
func (u *UI) stats(w http.ResponseWriter, r *request) {
	text, err := styx.ReadFile(r.Context(), r.root, "/node/stats", 64<<10)
	if err != nil {
		http.Error(w, "/node/stats: "+err.Error(), http.StatusNotFound)
		return
	}
	counts := map[string]uint64{}
	for _, line := range strings.Split(string(text), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			counts[k] = n
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"t": u.o.Now().UnixMilli(), "counts": counts})
}

// clusterNode is a node of the cluster graph: this node, an import, a
// ledger member (or both).
type clusterNode struct {
	ID     string `json:"id"`
	Self   bool   `json:"self,omitempty"`
	Import string `json:"import,omitempty"` // where it is mounted
	State  string `json:"state,omitempty"`  // the import's connection: up, down, connecting...
	Member string `json:"member,omitempty"` // voter, nonvoter
	Raft   string `json:"raft,omitempty"`   // the raft contact: self, ok, or what is wrong
	Leader bool   `json:"leader,omitempty"`
}

// parseImports reads /ns/imports: "import [-flags] KEY [REMOTEPATH]
// MOUNTPOINT # state STATE since T [addr A] [err E]" lines. Lines it
// cannot read are skipped.
func parseImports(text string) []clusterNode {
	var out []clusterNode
	for _, line := range strings.Split(text, "\n") {
		cmd, comment, _ := strings.Cut(line, " # ")
		f, err := plan9.Tokenize(cmd)
		if err != nil || len(f) < 3 || f[0] != "import" {
			continue
		}
		args := f[1:]
		if strings.HasPrefix(args[0], "-") {
			args = args[1:]
		}
		if len(args) < 2 || args[0] == "" {
			continue
		}
		n := clusterNode{ID: args[0], Import: args[len(args)-1], State: "unknown"}
		if c, err := plan9.Tokenize(comment); err == nil {
			for i := 0; i+1 < len(c); i += 2 {
				if c[i] == "state" {
					n.State = c[i+1]
				}
			}
		}
		out = append(out, n)
	}
	return out
}

// parseMembers reads /ledger/status's "member ID KIND ADDR CONTACT" and
// "leader ID" lines.
func parseMembers(text string) []clusterNode {
	var out []clusterNode
	leader := ""
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "leader":
			leader = f[1]
		case len(f) >= 5 && f[0] == "member":
			out = append(out, clusterNode{ID: f[1], Member: f[2], Raft: strings.Join(f[4:], " ")})
		}
	}
	for i := range out {
		out[i].Leader = out[i].ID == leader
	}
	return out
}

// cluster answers /cluster.json: this node, its imports and the
// ledger's members, merged by key, as the user's namespace shows them
// (a file it cannot read adds nothing).
func (u *UI) cluster(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	read := func(p string) string {
		b, err := styx.ReadFile(ctx, r.root, p, 256<<10)
		if err != nil {
			return ""
		}
		return string(b)
	}
	self := strings.TrimSpace(read("/node/id"))
	nodes := []clusterNode{{ID: self, Self: true}}
	at := map[string]int{self: 0}
	merge := func(n clusterNode) {
		i, ok := at[n.ID]
		if !ok {
			at[n.ID] = len(nodes)
			nodes = append(nodes, n)
			return
		}
		m := &nodes[i]
		if n.Import != "" {
			m.Import, m.State = n.Import, n.State
		}
		if n.Member != "" {
			m.Member, m.Raft, m.Leader = n.Member, n.Raft, n.Leader
		}
	}
	for _, n := range parseImports(read("/ns/imports")) {
		merge(n)
	}
	for _, n := range parseMembers(read("/ledger/status")) {
		merge(n)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"t": u.o.Now().UnixMilli(), "nodes": nodes})
}

// The node page: the node, its names, the DHT and the imports, each
// the text of the files that tell it.

package webui

import (
	"net/http"
	"strings"

	"cheshire/styx"
)

// section is a part of the node page: a title and a file's text.
type section struct {
	Title, Path, ID, Text, Err string
}

// nodeSections are the files the node page shows, in order.
var nodeSections = []struct{ title, path string }{
	{"id", "/node/id"},
	{"addresses", "/node/addrs"},
	{"version", "/node/version"},
	{"uptime", "/node/uptime"},
	{"DHT", "/dht/status"},
	{"DHT peers", "/dht/peers"},
	{"imports, with the state of their connections", "/ns/imports"},
	{"exports", "/ns/exports"},
}

// node shows the node's files and the zones it serves. Each is read
// through the user's namespace: what the user cannot read is said so.
func (u *UI) node(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	var ss []section
	for _, n := range nodeSections {
		s := section{Title: n.title, Path: n.path, ID: strings.ReplaceAll(strings.TrimPrefix(n.path, "/"), "/", "-")}
		b, err := styx.ReadFile(ctx, r.root, n.path, 256<<10)
		if err != nil {
			s.Err = err.Error()
		} else {
			s.Text = strings.TrimRight(string(b), "\n")
		}
		ss = append(ss, s)
	}
	zones := entryNames(ctx, r.root, true, "dns", "zones")
	u.render(w, http.StatusOK, "node.html", map[string]any{"User": r.user, "CSRF": r.csrf, "Sections": ss, "Zones": zones})
}

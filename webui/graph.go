// The live graph: the node's request rates over the last minutes,
// drawn in the page from /node/stats read once a second.

package webui

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

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

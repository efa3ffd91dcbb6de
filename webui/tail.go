// Following a file live: server-sent events of what is appended to it.

package webui

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Tail limits.
const (
	tailPoll  = 250 * time.Millisecond // a file that does not block at its end is looked at again this often
	tailStart = 64 << 10               // at most the last this many bytes of a file are sent first
)

// tail streams path as server-sent events, one event per line: the
// end of what the file holds, then whatever is added, until the page
// goes. Event and log files block at their end until there is more;
// other files are read again every tailPoll.
func (u *UI) tail(w http.ResponseWriter, r *request) {
	names, err := cleanPath(r.PathValue("path"))
	if err != nil || len(names) == 0 {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	f, err := styx.WalkFile(ctx, r.root, names)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Clunk()
	d, err := f.Stat(ctx)
	if err == nil && d.Mode&styx.DMDIR != 0 {
		err = plan9.ErrIsDir
	}
	if err == nil {
		_, err = f.Open(ctx, styx.OREAD)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming not supported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	stream := d.Mode&(styx.DMAPPEND|styx.DMEXCL) != 0 // offsets mean nothing: read on
	off := int64(0)
	if !stream && d.Length > tailStart {
		off = int64(d.Length) - tailStart
	}
	buf := make([]byte, 64<<10)
	var partial string
	for ctx.Err() == nil {
		n, err := f.Read(ctx, buf, off)
		if n > 0 {
			off += int64(n)
			text := partial + string(buf[:n])
			lines := strings.Split(text, "\n")
			partial = lines[len(lines)-1]
			for _, l := range lines[:len(lines)-1] {
				if _, err := w.Write([]byte("data: " + strings.ReplaceAll(l, "\r", "") + "\n\n")); err != nil {
					return
				}
			}
			fl.Flush()
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			w.Write([]byte("event: error\ndata: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n\n"))
			fl.Flush()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(tailPoll):
		}
	}
}

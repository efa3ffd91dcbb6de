package apps

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"cheshire/plan9"
	"cheshire/styx"
)

//go:embed page
var page embed.FS

// WebOptions are what the page's handler needs from the node.
type WebOptions struct {
	// User is the user a request signs in as, or an error: the request
	// then gets 401 and nothing else.
	User func(r *http.Request) (string, error)
	// Root attaches to user's namespace. Sessions are made through its
	// files, /apps/NAME/sessions/clone and the session's offer and
	// answer, with the user's permissions: an app of another node,
	// imported at /apps, is reached the same way.
	Root func(ctx context.Context, user string) (styx.File, error)
}

var pagePath = regexp.MustCompile(`^/apps/([a-z0-9][a-z0-9-]{0,62})/(|app\.js|offer)$`)

// Handler serves, below /apps/:
//
//	GET  /apps/NAME/         the page: video full-window, input back
//	GET  /apps/NAME/app.js   its script
//	POST /apps/NAME/offer    the browser's SDP offer in the body; the
//	                         answer is JSON {"session": "N", "sdp": SDP}
func Handler(o WebOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := o.User(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="cheshire"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		m := pagePath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			if r.Method == http.MethodGet && pagePath.MatchString(r.URL.Path+"/") {
				http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
				return
			}
			http.NotFound(w, r)
			return
		}
		name, file := m[1], m[2]
		switch {
		case file == "offer" && r.Method == http.MethodPost:
			serveOffer(w, r, o, user, name)
		case file != "offer" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			servePage(w, r, file)
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "apps: method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

func servePage(w http.ResponseWriter, r *http.Request, file string) {
	name, ctype := "page/index.html", "text/html; charset=utf-8"
	if file == "app.js" {
		name, ctype = "page/app.js", "text/javascript; charset=utf-8"
	}
	b, err := page.ReadFile(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; media-src 'self' blob:")
	w.Write(b)
}

func serveOffer(w http.ResponseWriter, r *http.Request, o WebOptions, user, name string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOffer+1))
	if err != nil {
		http.Error(w, "apps: reading the offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxOffer {
		http.Error(w, "apps: offer too large", http.StatusRequestEntityTooLarge)
		return
	}
	root, err := o.Root(r.Context(), user)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	defer root.Clunk()
	dir, err := locate(r.Context(), root, name)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	sess, answer, err := offerFiles(r.Context(), root, dir, body)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Session string `json:"session"`
		SDP     string `json:"sdp"`
	}{sess, string(answer)})
}

// maxImports bounds the imports locate looks through.
const maxImports = 64

// locate finds the app name in the user's namespace: at /apps/NAME, or
// else in the /apps of an imported node, /n/NODE/apps/NAME (the first,
// in the order /n lists them), or else through the DHT, at
// /net/find/apps/NAME (#find mounted there, the node exporting /apps).
// It returns its directory, without the leading slash.
func locate(ctx context.Context, root styx.File, name string) (string, error) {
	dirs := []string{"apps/" + name}
	if n, err := walkOpen(ctx, root, "n", styx.OREAD); err == nil {
		ents, _ := n.ReadDir(ctx)
		n.Clunk()
		for i, d := range ents {
			if i == maxImports {
				break
			}
			if d.Mode&styx.DMDIR != 0 {
				dirs = append(dirs, "n/"+d.Name+"/apps/"+name)
			}
		}
	}
	// Last, the DHT by path: a node that exports its /apps to every key
	// is found through #find, where the user mounted it at /net/find.
	dirs = append(dirs, "net/find/apps/"+name)
	for _, d := range dirs {
		f, err := styx.WalkFile(ctx, root, styx.SplitPath(d+"/sessions/clone"))
		if err == nil {
			f.Clunk()
			return d, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("apps: no app %q in /apps, under /n or /net/find: %w", name, plan9.ErrNotFound)
}

// offerFiles makes a session of the app at dir below root through its
// files: clone, then offer written, then answer read.
func offerFiles(ctx context.Context, root styx.File, dir string, offer []byte) (string, []byte, error) {
	clone, err := walkOpen(ctx, root, dir+"/sessions/clone", styx.OREAD)
	if err != nil {
		return "", nil, err
	}
	buf := make([]byte, 32)
	n, err := clone.Read(ctx, buf, 0)
	clone.Clunk()
	if err != nil {
		return "", nil, err
	}
	sess := strings.TrimSpace(string(buf[:n]))
	if _, err := strconv.Atoi(sess); err != nil {
		return "", nil, fmt.Errorf("apps: bad session number %q from clone", sess)
	}
	sdir := dir + "/sessions/" + sess
	f, err := walkOpen(ctx, root, sdir+"/offer", styx.OWRITE|styx.OTRUNC)
	if err != nil {
		return "", nil, err
	}
	for off := 0; off < len(offer); {
		end := min(off+4096, len(offer))
		n, err := f.Write(ctx, offer[off:end], int64(off))
		if err != nil {
			f.Clunk()
			return "", nil, err
		}
		off += n
	}
	if err := f.Clunk(); err != nil { // the offer is taken at clunk
		closeSession(ctx, root, sdir)
		return "", nil, err
	}
	answer, err := styx.ReadFile(ctx, root, sdir+"/answer", maxOffer)
	if err != nil {
		closeSession(ctx, root, sdir)
		return "", nil, err
	}
	return sess, answer, nil
}

func closeSession(ctx context.Context, root styx.File, sdir string) {
	if f, err := walkOpen(ctx, root, sdir+"/ctl", styx.OWRITE); err == nil {
		f.Write(ctx, []byte("close"), 0)
		f.Clunk()
	}
}

func walkOpen(ctx context.Context, root styx.File, path string, mode uint8) (styx.File, error) {
	names := styx.SplitPath(path)
	qids, f, err := root.Walk(ctx, names)
	if err != nil {
		return nil, err
	}
	if len(qids) < len(names) {
		return nil, fmt.Errorf("%s: %w", path, plan9.ErrNotFound)
	}
	if _, err := f.Open(ctx, mode); err != nil {
		f.Clunk()
		return nil, err
	}
	return f, nil
}

// httpStatus is the HTTP status of an error from the files.
func httpStatus(err error) int {
	switch plan9.Errno(err.Error()) {
	case syscall.ENOENT:
		return http.StatusNotFound
	case syscall.EACCES, syscall.EPERM:
		return http.StatusForbidden
	case syscall.EBUSY, syscall.EAGAIN:
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, context.Canceled) {
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

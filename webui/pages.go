// The pages: the namespace browser, the ctl line, the modules.

package webui

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cheshire/plan9"
	"cheshire/styx"
)

// Display limits.
const (
	MaxShown = 1 << 20 // bytes of a file shown (and so editable)
	PageSize = 500     // directory entries a page
	maxReply = 64 << 10
)

// cleanPath turns the URL's path into namespace path elements, refusing
// what could leave the path given: ".", "..", empty elements (an
// encoded slash), NUL.
func cleanPath(p string) ([]string, error) {
	if strings.ContainsRune(p, 0) {
		return nil, errors.New("bad path: NUL in it")
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, nil
	}
	names := strings.Split(p, "/")
	for _, n := range names {
		if n == "" || n == "." || n == ".." {
			return nil, fmt.Errorf("bad path element %q", n)
		}
	}
	return names, nil
}

func joinPath(names []string) string { return "/" + strings.Join(names, "/") }

// human is a size as ls -h would print it.
func human(n uint64) string {
	switch {
	case n < 1<<10:
		return strconv.FormatUint(n, 10)
	case n < 1<<20:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}

// crumb is one link of the path shown at the top of a page.
type crumb struct{ Name, Href string }

func crumbs(names []string) []crumb {
	cs := []crumb{{"/", "/fs/"}}
	for i, n := range names {
		cs = append(cs, crumb{n, "/fs" + joinPath(names[:i+1]) + "/"})
	}
	return cs
}

// entry is a directory entry as listed.
type entry struct {
	Name, Href, Mode, User, Size, Mtime string
	Dir, Mount                          bool
}

// browse shows path: a directory's entries (a page of them), a file's
// content with an editor, a ctl file's command line.
func (u *UI) browse(w http.ResponseWriter, r *request) {
	names, err := cleanPath(r.PathValue("path"))
	if err != nil {
		u.fail(w, r.Request, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	f, err := styx.WalkFile(ctx, r.root, names)
	if err != nil {
		u.fail(w, r.Request, http.StatusNotFound, joinPath(names)+": "+err.Error())
		return
	}
	defer f.Clunk()
	d, err := f.Stat(ctx)
	if err != nil {
		u.fail(w, r.Request, http.StatusInternalServerError, joinPath(names)+": "+err.Error())
		return
	}
	data := map[string]any{"User": r.user, "CSRF": r.csrf, "Path": joinPath(names), "Crumbs": crumbs(names),
		"Names": names, "Stat": d}
	if d.Mode&styx.DMDIR != 0 {
		u.listDir(w, r, f, names, data)
		return
	}
	data["Mode"] = plan9.PermString(d.Mode)
	data["Append"] = d.Mode&(styx.DMAPPEND|styx.DMEXCL) != 0
	if names[len(names)-1] == "ctl" || d.Mode&0o444 == 0 {
		data["Ctl"] = true
	}
	if d.Mode&0o444 != 0 && !data["Append"].(bool) {
		content, err := styx.ReadFile(ctx, f, "", MaxShown) // through a clone of f
		switch {
		case err != nil:
			data["ReadErr"] = err.Error()
		case utf8.Valid(content) && !bytes.ContainsRune(content, 0):
			data["Text"] = string(content)
		default:
			data["Hex"] = hex.Dump(content[:min(len(content), 64<<10)])
		}
		data["Truncated"] = d.Length > MaxShown
	}
	u.render(w, http.StatusOK, "file.html", data)
}

// entryNames lists the names in the directory at names of root (only
// its subdirectories if dirs), or none if it cannot be read: for pages
// that show what they can.
func entryNames(ctx context.Context, root styx.File, dirs bool, names ...string) []string {
	f, err := styx.WalkFile(ctx, root, names)
	if err != nil {
		return nil
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		return nil
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range ds {
		if !dirs || d.Mode&styx.DMDIR != 0 {
			out = append(out, d.Name)
		}
	}
	return out
}

// listDir lists a page of a directory, marking its mount points.
func (u *UI) listDir(w http.ResponseWriter, r *request, f styx.File, names []string, data map[string]any) {
	ctx := r.Context()
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		u.fail(w, r.Request, http.StatusForbidden, joinPath(names)+": "+err.Error())
		return
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		u.fail(w, r.Request, http.StatusInternalServerError, joinPath(names)+": "+err.Error())
		return
	}
	slices.SortFunc(ds, func(a, b styx.Dir) int { return strings.Compare(a.Name, b.Name) })
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pages := (len(ds) + PageSize - 1) / PageSize
	page = max(0, min(page, pages-1))
	mounts := u.mountPoints(ctx, r.root)
	var es []entry
	for _, d := range ds[min(len(ds), page*PageSize):min(len(ds), (page+1)*PageSize)] {
		p := append(slices.Clip(names), d.Name)
		e := entry{Name: d.Name, Mode: plan9.PermString(d.Mode), User: d.Uid, Size: human(d.Length),
			Mtime: time.Unix(int64(d.Mtime), 0).UTC().Format("2006-01-02 15:04"), Dir: d.Mode&styx.DMDIR != 0,
			Mount: mounts[joinPath(p)]}
		e.Href = "/fs" + escapePath(p)
		if e.Dir {
			e.Href += "/"
		}
		es = append(es, e)
	}
	data["Entries"], data["Total"], data["Page"], data["Pages"] = es, len(ds), page, pages
	data["HasPrev"], data["Prev"] = page > 0, page-1
	data["HasNext"], data["Next"] = page+1 < pages, page+1
	u.render(w, http.StatusOK, "dir.html", data)
}

// escapePath escapes each element of a path for a URL.
func escapePath(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(n))
	}
	return b.String()
}

// mountPoints are the paths of the namespace that something is mounted
// or bound on, from /ns/ns (the last argument of each line).
func (u *UI) mountPoints(ctx context.Context, root styx.File) map[string]bool {
	m := map[string]bool{}
	text, err := styx.ReadFile(ctx, root, "/ns/ns", 1<<20)
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(text), "\n") {
		f, err := plan9.Tokenize(line)
		if err != nil || len(f) < 2 {
			continue
		}
		m[f[len(f)-1]] = true
	}
	return m
}

// change applies a form of a file's page: op=save writes the content
// (the file truncated), op=ctl writes a line and shows the reply read
// back on the same fid.
func (u *UI) change(w http.ResponseWriter, r *request) {
	names, err := cleanPath(r.PathValue("path"))
	if err != nil || len(names) == 0 {
		u.fail(w, r.Request, http.StatusBadRequest, "bad path")
		return
	}
	ctx := r.Context()
	path := joinPath(names)
	switch r.PostFormValue("op") {
	case "save":
		content := strings.ReplaceAll(r.PostFormValue("content"), "\r\n", "\n")
		if err := styx.WriteFile(ctx, r.root, path, []byte(content), 0o644); err != nil {
			u.fail(w, r.Request, http.StatusConflict, path+": "+err.Error())
			return
		}
		u.o.Log.Info("webui: saved", "user", r.user, "path", path, "bytes", len(content))
		http.Redirect(w, r.Request, "/fs"+escapePath(names)+"?saved=1", http.StatusSeeOther)
	case "ctl":
		line := strings.TrimRight(r.PostFormValue("line"), "\r\n")
		reply, err := ctlLine(ctx, r.root, names, line)
		data := map[string]any{"User": r.user, "CSRF": r.csrf, "Path": path, "Crumbs": crumbs(names), "Line": line,
			"Reply": string(reply), "Ctl": true}
		code := http.StatusOK
		if err != nil {
			data["CtlErr"] = err.Error()
			code = http.StatusConflict
		}
		u.o.Log.Info("webui: ctl", "user", r.user, "path", path, "err", err)
		u.render(w, code, "file.html", data)
	default:
		u.fail(w, r.Request, http.StatusBadRequest, "unknown form op")
	}
}

// ctlLine writes line to the file at names, and reads back its reply
// on the same fid if the file may be opened for reading and writing.
func ctlLine(ctx context.Context, root styx.File, names []string, line string) ([]byte, error) {
	f, err := styx.WalkFile(ctx, root, names)
	if err != nil {
		return nil, err
	}
	rdwr := true
	if _, err := f.Open(ctx, styx.ORDWR); err != nil {
		f.Clunk()
		if f, err = styx.WalkFile(ctx, root, names); err != nil {
			return nil, err
		}
		if _, err := f.Open(ctx, styx.OWRITE); err != nil {
			f.Clunk()
			return nil, err
		}
		rdwr = false
	}
	defer f.Clunk()
	if _, err := f.Write(ctx, []byte(line+"\n"), 0); err != nil {
		return nil, err
	}
	if !rdwr {
		return nil, nil
	}
	buf := make([]byte, maxReply)
	n, err := f.Read(ctx, buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil // a ctl file with nothing to say
	}
	return buf[:n], nil
}

// module is a row of the modules page.
type module struct {
	Name   string
	Status []kv
	State  string
}

type kv struct{ K, V string }

// modules lists /modules: each module's status.
func (u *UI) modules(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	data := map[string]any{"User": r.user, "CSRF": r.csrf, "Done": r.URL.Query().Get("done")}
	f, err := styx.WalkFile(ctx, r.root, []string{"modules"})
	if err != nil {
		u.fail(w, r.Request, http.StatusNotFound, "/modules: "+err.Error())
		return
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		u.fail(w, r.Request, http.StatusForbidden, "/modules: "+err.Error())
		return
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		u.fail(w, r.Request, http.StatusInternalServerError, "/modules: "+err.Error())
		return
	}
	var ms []module
	for _, d := range ds {
		if d.Mode&styx.DMDIR == 0 {
			continue
		}
		m := module{Name: d.Name}
		st, err := styx.ReadFile(ctx, r.root, "/modules/"+d.Name+"/status", 64<<10)
		if err != nil {
			m.Status = []kv{{"error", err.Error()}}
		}
		for _, line := range strings.Split(strings.TrimSpace(string(st)), "\n") {
			k, v, _ := strings.Cut(line, " ")
			if k == "state" {
				m.State = v
			}
			if k != "" {
				m.Status = append(m.Status, kv{k, v})
			}
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b module) int { return strings.Compare(a.Name, b.Name) })
	data["Modules"] = ms
	if tr, err := styx.ReadFile(ctx, r.root, "/modules/trusted", 64<<10); err == nil {
		data["Trusted"] = strings.Fields(string(tr))
	}
	u.render(w, http.StatusOK, "modules.html", data)
}

// moduleCtl writes "VERB NAME" to /modules/ctl, or "load NAME SOURCE":
// SOURCE a path of the namespace, or an uploaded package, written first
// to /tmp/NAME.pkg of the user's namespace.
func (u *UI) moduleCtl(w http.ResponseWriter, r *request) {
	verb, name := r.PostFormValue("verb"), r.PostFormValue("name")
	line := verb + " " + plan9.Quote(name)
	switch verb {
	case "start", "stop", "restart", "reload", "unload":
	case "load":
		src := strings.TrimSpace(r.PostFormValue("source"))
		if f, _, err := r.FormFile("package"); err == nil {
			data, err := io.ReadAll(io.LimitReader(f, MaxUpload))
			f.Close()
			if err != nil {
				u.fail(w, r.Request, http.StatusBadRequest, "upload: "+err.Error())
				return
			}
			src = "/tmp/" + name + ".pkg"
			if strings.ContainsAny(name, "/\x00") || name == "" {
				u.fail(w, r.Request, http.StatusBadRequest, "bad module name")
				return
			}
			if err := styx.WriteFile(r.Context(), r.root, src, data, 0o600); err != nil {
				u.fail(w, r.Request, http.StatusConflict, src+": "+err.Error())
				return
			}
		}
		if src == "" {
			u.fail(w, r.Request, http.StatusBadRequest, "load: want a source path or a package file")
			return
		}
		line += " " + plan9.Quote(src)
	default:
		u.fail(w, r.Request, http.StatusBadRequest, "unknown module verb")
		return
	}
	if _, err := ctlLine(r.Context(), r.root, []string{"modules", "ctl"}, line); err != nil {
		u.fail(w, r.Request, http.StatusConflict, line+": "+err.Error())
		return
	}
	u.o.Log.Info("webui: module", "user", r.user, "line", line)
	http.Redirect(w, r.Request, "/modules?done="+url.QueryEscape(line), http.StatusSeeOther)
}

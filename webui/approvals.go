// The approvals page: the requests of /node/requests, each approved by
// writing its ctl line through the signed-in user's own namespace (so
// that the namespace's permissions decide who may), then marked so in
// /node/requests/decide; or refused.

package webui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"cheshire/plan9"
	"cheshire/styx"
)

// requestsDir is where the node keeps its approvals queue.
const requestsDir = "/node/requests"

// maxRequestText bounds a request file read: a few lines, a path of up
// to 1 KiB among them.
const maxRequestText = 8 << 10

// approvalRequest is a request as its file tells it.
type approvalRequest struct {
	ID                          int
	From, Kind, Args            string
	File, Line, State, By, Time string
}

// parseRequest parses a request file: "key value" lines, of which id,
// kind, file, line and state must be there, once each; the file must be
// an absolute path and the line one line.
func parseRequest(text string) (approvalRequest, error) {
	var r approvalRequest
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok || seen[k] {
			return approvalRequest{}, fmt.Errorf("bad request line %q", line)
		}
		seen[k] = true
		switch k {
		case "id":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return approvalRequest{}, fmt.Errorf("bad request id %q", v)
			}
			r.ID = n
		case "from":
			r.From = v
		case "kind":
			r.Kind = v
		case "args":
			r.Args = v
		case "file":
			r.File = v
		case "line":
			r.Line = v
		case "state":
			r.State = v
		case "by":
			r.By = v
		case "time":
			r.Time = v
		}
	}
	if !seen["id"] || r.Kind == "" || r.Line == "" || r.State == "" {
		return approvalRequest{}, errors.New("bad request: id, kind, line or state missing")
	}
	if names, err := cleanPath(strings.TrimPrefix(r.File, "/")); err != nil || len(names) == 0 || !strings.HasPrefix(r.File, "/") {
		return approvalRequest{}, fmt.Errorf("bad request file %q", r.File)
	}
	return r, nil
}

// readRequests reads the queue through the user's namespace, newest
// first.
func (u *UI) readRequests(r *request) ([]approvalRequest, error) {
	ctx := r.Context()
	f, err := styx.WalkFile(ctx, r.root, styx.SplitPath(requestsDir))
	if err != nil {
		return nil, err
	}
	defer f.Clunk()
	if _, err := f.Open(ctx, styx.OREAD); err != nil {
		return nil, err
	}
	ds, err := f.ReadDir(ctx)
	if err != nil {
		return nil, err
	}
	var out []approvalRequest
	for _, d := range ds {
		if _, err := strconv.Atoi(d.Name); err != nil {
			continue // the ctl
		}
		if q, err := u.readRequest(r, d.Name); err == nil {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b approvalRequest) int { return b.ID - a.ID })
	return out, nil
}

// readRequest reads request id from the queue.
func (u *UI) readRequest(r *request, id string) (approvalRequest, error) {
	text, err := styx.ReadFile(r.Context(), r.root, requestsDir+"/"+id, maxRequestText)
	if err != nil {
		return approvalRequest{}, err
	}
	q, err := parseRequest(string(text))
	if err != nil {
		return approvalRequest{}, fmt.Errorf("%s/%s: %w", requestsDir, id, err)
	}
	return q, nil
}

// approvals lists the queue: the pending requests with their buttons,
// then those decided.
func (u *UI) approvals(w http.ResponseWriter, r *request) {
	data := map[string]any{"User": r.user, "CSRF": r.csrf, "Done": r.URL.Query().Get("done")}
	qs, err := u.readRequests(r)
	if err != nil {
		data["Err"] = requestsDir + ": " + err.Error()
	}
	var pending, decided []approvalRequest
	for _, q := range qs {
		if q.State == "pending" {
			pending = append(pending, q)
		} else {
			decided = append(decided, q)
		}
	}
	data["Pending"], data["Decided"] = pending, decided
	u.render(w, http.StatusOK, "approvals.html", data)
}

// decide applies an approvals form: op=approve writes the request's
// line, as read now from its file (never from the form), to its ctl
// file of the user's namespace, then "approve ID" to the queue's decide
// file (opened first: one who may not decide writes nothing); op=refuse
// writes "refuse ID" there.
func (u *UI) decide(w http.ResponseWriter, r *request) {
	id := r.PostFormValue("id")
	if _, err := strconv.Atoi(id); err != nil {
		u.fail(w, r.Request, http.StatusBadRequest, "bad request id")
		return
	}
	op := r.PostFormValue("op")
	if op != "approve" && op != "refuse" {
		u.fail(w, r.Request, http.StatusBadRequest, "unknown form op")
		return
	}
	ctx := r.Context()
	q, err := u.readRequest(r, id)
	if err != nil {
		u.fail(w, r.Request, http.StatusNotFound, "request "+id+": "+err.Error())
		return
	}
	if q.State != "pending" {
		u.fail(w, r.Request, http.StatusConflict, fmt.Sprintf("request %s cannot be decided again: %s", id, q.State))
		return
	}
	// The decide file first: one who may not decide is refused before
	// the line is written.
	dec, err := styx.WalkFile(ctx, r.root, styx.SplitPath(requestsDir+"/decide"))
	if err == nil {
		if _, err = dec.Open(ctx, styx.OWRITE); err != nil {
			dec.Clunk()
		}
	}
	if err != nil {
		u.o.Log.Info("webui: decision refused", "user", r.user, "id", id, "err", err)
		u.fail(w, r.Request, http.StatusForbidden, fmt.Sprintf("%s %s: %s/decide: %v", op, id, requestsDir, err))
		return
	}
	defer dec.Clunk()
	if op == "approve" {
		names, _ := cleanPath(strings.TrimPrefix(q.File, "/"))
		if _, err := ctlLine(ctx, r.root, names, q.Line); err != nil {
			u.o.Log.Info("webui: approval failed", "user", r.user, "id", id, "file", q.File, "err", err)
			u.fail(w, r.Request, http.StatusConflict, fmt.Sprintf("approve %s: %s: %s: %v", id, q.File, q.Line, err))
			return
		}
	}
	mark := op + " " + plan9.Quote(id)
	if _, err := dec.Write(ctx, []byte(mark+"\n"), 0); err != nil {
		msg := fmt.Sprintf("%s: %v", mark, err)
		if op == "approve" {
			msg = fmt.Sprintf("%s was written to %s, but the request could not be marked approved: %v", q.Line, q.File, err)
		}
		u.fail(w, r.Request, http.StatusConflict, msg)
		return
	}
	u.o.Log.Info("webui: request decided", "user", r.user, "id", id, "op", op, "line", q.Line)
	http.Redirect(w, r.Request, "/approvals?done="+url.QueryEscape(op+" "+id), http.StatusSeeOther)
}

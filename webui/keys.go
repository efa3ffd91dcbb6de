// The keys page: the CA's state, certificates issued and revoked, and
// its backup and restore with a passphrase (the ctl lines of /ca).

package webui

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"cheshire/styx"
)

// keys shows /ca: its ctl's state and its certificates.
func (u *UI) keys(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	data := map[string]any{"User": r.user, "CSRF": r.csrf, "Done": r.URL.Query().Get("done")}
	st, err := styx.ReadFile(ctx, r.root, "/ca/ctl", 64<<10)
	if err != nil {
		data["Err"] = "/ca/ctl: " + err.Error()
	}
	var state []kv
	for _, line := range strings.Split(strings.TrimSpace(string(st)), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			state = append(state, kv{k, v})
		}
	}
	data["State"] = state
	data["Certs"] = entryNames(ctx, r.root, false, "ca", "certs")
	data["SSHCerts"] = entryNames(ctx, r.root, false, "ca", "ssh", "certs")
	u.render(w, http.StatusOK, "keys.html", data)
}

// keysCtl applies a form of the keys page, each as the ctl line a shell
// user would write to /ca/ctl: issue NAME, revoke SERIAL, backup
// PASSPHRASE (the sealed backup is then downloaded), restore PASSPHRASE
// with an uploaded backup (written to /ca/backup first).
func (u *UI) keysCtl(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	pass := r.PostFormValue("passphrase")
	var line string
	switch op := r.PostFormValue("op"); op {
	case "issue", "revoke":
		arg := strings.TrimSpace(r.PostFormValue("arg"))
		if arg == "" || strings.ContainsAny(arg, " \t\n'") {
			u.fail(w, r.Request, http.StatusBadRequest, op+": want one word")
			return
		}
		line = op + " " + arg
	case "ssh-user", "ssh-host":
		// NAME, then for a user the principals, then the public key's
		// authorized_keys text.
		name, key := strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("pubkey"))
		principals := strings.TrimSpace(r.PostFormValue("principals"))
		if name == "" || key == "" || strings.ContainsAny(name+principals, " \t\n'") || strings.ContainsAny(key, "\n'") || op == "ssh-user" && principals == "" {
			u.fail(w, r.Request, http.StatusBadRequest, op+": want a name, "+map[string]string{"ssh-user": "principals and ", "ssh-host": ""}[op]+"a public key on one line")
			return
		}
		line = op + " " + name
		switch {
		case op == "ssh-user":
			line += " " + principals
		case principals != "":
			line += " principals=" + principals
		}
		line += " " + key
	case "backup":
		line = "backup " + quoteArg(pass)
	case "restore":
		backup := r.PostFormValue("backup")
		if backup == "" {
			if f, _, err := r.FormFile("file"); err == nil {
				b, _ := io.ReadAll(io.LimitReader(f, MaxUpload))
				f.Close()
				backup = string(b)
			}
		}
		if err := styx.WriteFile(ctx, r.root, "/ca/backup", []byte(backup), 0o600); err != nil {
			u.fail(w, r.Request, http.StatusConflict, "/ca/backup: "+err.Error())
			return
		}
		line = "restore " + quoteArg(pass)
	default:
		u.fail(w, r.Request, http.StatusBadRequest, "unknown form op")
		return
	}
	verb, _, _ := strings.Cut(line, " ")
	if _, err := ctlLine(ctx, r.root, []string{"ca", "ctl"}, line); err != nil {
		u.o.Log.Info("webui: ca", "user", r.user, "verb", verb, "err", err)
		u.fail(w, r.Request, http.StatusConflict, verb+": "+err.Error())
		return
	}
	u.o.Log.Info("webui: ca", "user", r.user, "verb", verb)
	if verb == "backup" {
		data, err := styx.ReadFile(ctx, r.root, "/ca/backup", 1<<20)
		if err != nil {
			u.fail(w, r.Request, http.StatusInternalServerError, "/ca/backup: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", `attachment; filename="cheshire-ca-backup.pem"`)
		w.Write(data)
		return
	}
	http.Redirect(w, r.Request, "/keys?done="+url.QueryEscape(verb), http.StatusSeeOther)
}

// quoteArg quotes a passphrase for a ctl line, as rc would.
func quoteArg(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

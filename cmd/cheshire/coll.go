package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"cheshire/importers/remote"
	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/ns"
	"cheshire/plan9"
	"cheshire/providers/coll"
	"cheshire/providers/msg"
	"cheshire/styx"
)

// msgColl is /msg and /coll, and what joins them: coll replicates its
// deltas over msg's topics and catches up by reading a peer's #coll
// service, both on the connection imports share with the peer. Neither
// provider imports the other; this file hands each the other's
// functions.
type msgColl struct {
	msg  *msg.Msg
	coll *coll.Coll
}

// maxFetch bounds what one catch-up reads of a peer's deltas.
const maxFetch = 256 << 20

// openMsgColl opens msg's state in DIR/msg and the collections in
// DIR/coll; peers are reached through im.
func openMsgColl(dir, owner string, id *nodekey.Identity, im *remote.Importer, log *slog.Logger) (*msgColl, error) {
	importKey := func(ctx context.Context, key, aname string) (styx.File, error) {
		pk, err := nodekey.Decode(key)
		if err != nil {
			return nil, err
		}
		return im.Import(ctx, pk, aname, true)
	}
	m, err := msg.New(msg.Options{Dir: filepath.Join(dir, "msg"), Self: id.ID(), Owner: owner, Log: log.With("module", "msg"),
		Dial: func(ctx context.Context, key string) (styx.File, error) { return importKey(ctx, key, "#msg") }})
	if err != nil {
		return nil, err
	}
	c, err := coll.New(coll.Options{Dir: filepath.Join(dir, "coll"), Key: id.Private, Owner: owner, Log: log.With("module", "coll"),
		Send: m.Send, Listen: m.Listen,
		Fetch: func(ctx context.Context, key, name string) ([]byte, error) {
			root, err := importKey(ctx, key, "#coll")
			if err != nil {
				return nil, err
			}
			defer root.Clunk()
			return styx.ReadFile(ctx, root, name+"/deltas", maxFetch)
		}})
	if err != nil {
		m.Close()
		return nil, err
	}
	return &msgColl{msg: m, coll: c}, nil
}

// keyServices are the services peers reach by key: #msg, and #coll
// for the peers of msg.
func (mc *msgColl) keyServices() []ns.Option {
	return []ns.Option{
		ns.WithKeyService("#msg", func(ctx context.Context, key, rest string) (styx.File, error) {
			return mc.msg.PeerAttach(ctx, key)
		}),
		ns.WithKeyService("#coll", func(ctx context.Context, key, rest string) (styx.File, error) {
			if !mc.msg.IsPeer(key) {
				return nil, msg.ErrNotPeer
			}
			return mc.coll.PeerAttach(ctx, key)
		}),
	}
}

func (mc *msgColl) modules() []module.Module {
	return []module.Module{
		module.Native(module.Manifest{Name: "msg", Version: version, Mount: "/msg",
			Description: "messages between nodes on topics, over the connections they share; limited and counted per peer"}, mc.msg),
		module.Native(module.Manifest{Name: "coll", Version: version, Mount: "/coll",
			Description: "typed collections replicated as signed deltas, with lossless and resolved views"}, mc.coll),
	}
}

func (mc *msgColl) close() {
	mc.coll.Close()
	mc.msg.Close()
}

// collHandler is /api/coll/NAME/ID on the node's HTTPS listener: GET
// gives the entity's resolved values as a JSON object, PUT writes the
// properties of a JSON object (a delta each; an array for a list, a
// delta an element), DELETE deletes the entity (a tombstone). The user
// signs in as git's do and acts through their own namespace's /coll, so
// what they may do is what the files let them.
func (p *parts) collHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := p.gitUser(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="cheshire"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		name, id, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/api/coll/"), "/")
		if !ok || name == "" || id == "" || strings.ContainsAny(id, "/") || name == "." || name == ".." || id == "." || id == ".." {
			http.Error(w, "want /api/coll/NAME/ID", http.StatusNotFound)
			return
		}
		root, err := p.userRoot(r.Context(), user)
		if err != nil {
			httpError(w, err)
			return
		}
		defer root.Clunk()
		base := "/coll/" + name
		switch r.Method {
		case http.MethodGet:
			ent, err := readEntity(r.Context(), root, base, id)
			if err != nil {
				httpError(w, err)
				return
			}
			writeJSON(w, ent)
		case http.MethodPut:
			if err := putEntity(r, root, base, id); err != nil {
				httpError(w, err)
				return
			}
			ent, err := readEntity(r.Context(), root, base, id)
			if err != nil {
				httpError(w, err)
				return
			}
			writeJSON(w, ent)
		case http.MethodDelete:
			f, err := styx.WalkFile(r.Context(), root, styx.SplitPath(base+"/entities/"+id))
			if err == nil {
				err = f.Remove(r.Context())
			}
			if err != nil {
				httpError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, PUT, DELETE")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

// collField is a line of /coll/NAME/schema.
type collField struct{ name, typ, resolver string }

func readSchema(ctx context.Context, root styx.File, base string) ([]collField, error) {
	data, err := styx.ReadFile(ctx, root, base+"/schema", 1<<20)
	if err != nil {
		return nil, err
	}
	var out []collField
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			out = append(out, collField{f[0], f[1], f[2]})
		}
	}
	return out, nil
}

// readEntity reads the resolved values of entity id as JSON values; an
// entity with none is "file not found".
func readEntity(ctx context.Context, root styx.File, base, id string) (map[string]any, error) {
	fields, err := readSchema(ctx, root, base)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, f := range fields {
		data, err := styx.ReadFile(ctx, root, base+"/entities/"+id+"/"+f.name, 1<<20)
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			continue
		}
		v := strings.TrimSuffix(string(data), "\n")
		switch {
		case f.resolver == "union":
			out[f.name] = strings.Split(v, "\n")
		case f.typ == "int" || f.typ == "float":
			out[f.name] = json.Number(v)
		case f.typ == "bool":
			out[f.name] = v == "true"
		default:
			out[f.name] = v
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("coll: %w: no entity %s", plan9.ErrNotFound, id)
	}
	return out, nil
}

// putEntity writes the properties of the request's JSON object.
func putEntity(r *http.Request, root styx.File, base, id string) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("coll: %w: bad JSON object: %v", plan9.ErrInvalid, err)
	}
	fields, err := readSchema(r.Context(), root, base)
	if err != nil {
		return err
	}
	for prop := range obj {
		if !slices.ContainsFunc(fields, func(f collField) bool { return f.name == prop }) {
			return fmt.Errorf("coll: %w: no such property %q", plan9.ErrInvalid, prop)
		}
	}
	ents := styx.SplitPath(base + "/entities")
	if err := makeEntity(r.Context(), root, ents, id); err != nil {
		return err
	}
	for prop, v := range obj {
		vals, err := jsonValues(v)
		if err != nil {
			return fmt.Errorf("coll: property %s: %w", prop, err)
		}
		for _, s := range vals {
			if err := styx.WriteFile(r.Context(), root, base+"/entities/"+id+"/"+prop, []byte(s), 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeEntity makes the directory of entity id in ents, unless it is
// there: an entity is made by making its directory.
func makeEntity(ctx context.Context, root styx.File, ents []string, id string) error {
	f, err := styx.WalkFile(ctx, root, append(slices.Clone(ents), id))
	if err == nil {
		return f.Clunk()
	}
	if !errors.Is(err, plan9.ErrNotFound) {
		return err
	}
	d, err := styx.WalkFile(ctx, root, ents)
	if err != nil {
		return err
	}
	f, _, err = d.Create(ctx, id, styx.DMDIR|0755, styx.OREAD)
	if err != nil {
		d.Clunk()
		return err
	}
	if f != d {
		d.Clunk()
	}
	return f.Clunk()
}

// jsonValues is the text of a JSON value: one value, or one an element
// of an array.
func jsonValues(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case json.Number:
		return []string{x.String()}, nil
	case bool:
		return []string{strconv.FormatBool(x)}, nil
	case []any:
		var out []string
		for _, e := range x {
			s, err := jsonValues(e)
			if err != nil || len(s) != 1 {
				return nil, fmt.Errorf("%w: bad list element", plan9.ErrInvalid)
			}
			out = append(out, s[0])
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: bad value: want a string, number, bool or array", plan9.ErrInvalid)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// httpError answers with the status an error's errno stands for.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch plan9.Errno(err.Error()) {
	case syscall.ENOENT:
		code = http.StatusNotFound
	case syscall.EACCES, syscall.EPERM:
		code = http.StatusForbidden
	case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.ERANGE, syscall.EBADMSG:
		code = http.StatusBadRequest
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		code = http.StatusRequestEntityTooLarge
	}
	http.Error(w, err.Error(), code)
}

package sdk

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"testing"

	"cheshire/modules/abi"
)

// do sends a request through the dispatcher, as the host does.
func do(t *testing.T, s *server, req abi.Request) abi.Response {
	t.Helper()
	var resp abi.Response
	if err := resp.Unmarshal(s.call(req.Append(nil))); err != nil {
		t.Fatalf("%s: bad response: %v", abi.OpName(req.Op), err)
	}
	// The response aliases the server's buffer: copy what is kept.
	resp.Data = slices.Clone(resp.Data)
	return resp
}

func testTree() (*Dir, *[]string) {
	var log []string
	value := []byte("v0")
	items := NewDir("items", 0o777)
	made := map[string]*FileNode{}
	items.SetGen(func(ctx context.Context) ([]Node, error) {
		var ns []Node
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range made {
				if !yield(k) {
					return
				}
			}
		}) {
			ns = append(ns, made[k])
		}
		return ns, nil
	})
	items.SetCreate(func(ctx context.Context, name string, perm uint32) (Node, error) {
		if perm&DMDIR != 0 {
			return nil, ErrPerm
		}
		made[name] = Static(name, perm, []byte("new "+name))
		return made[name], nil
	})
	items.SetRemove(func(ctx context.Context, name string) error {
		if _, ok := made[name]; !ok {
			return ErrNotFound
		}
		delete(made, name)
		return nil
	})
	root := NewDir("/", 0o555,
		Static("static", 0o444, []byte("hello")),
		Gen("who", 0o444, func(ctx context.Context) ([]byte, error) { return []byte(User(ctx)), nil }),
		Ctl("ctl", 0o666, func(context.Context) ([]byte, error) { return []byte("status\n"), nil },
			func(ctx context.Context, data []byte) error {
				if string(data) == "bad" {
					return ErrBadCtl
				}
				log = append(log, string(data))
				return nil
			}),
		ReadWrite("value", 0o666, func(context.Context) ([]byte, error) { return value, nil },
			func(ctx context.Context, data []byte) error {
				if string(data) == "refuse" {
					return errors.New("refused")
				}
				value = slices.Clone(data)
				return nil
			}),
		Filter("upper", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			out := slices.Clone(in)
			for i, c := range out {
				if 'a' <= c && c <= 'z' {
					out[i] = c - 'a' + 'A'
				}
			}
			return out, nil
		}),
		items,
	)
	return root, &log
}

func TestTreeThroughCalls(t *testing.T) {
	root, log := testTree()
	s := newServer(root)

	// Stat and ReadDir.
	r := do(t, s, abi.Request{Op: abi.OpStat, Path: "/static", User: "glenda"})
	if r.Err != "" || len(r.Infos) != 1 || r.Infos[0].Name != "static" || r.Infos[0].Size != 5 || r.Infos[0].Mode != 0o444 {
		t.Fatalf("stat /static: %+v", r)
	}
	r = do(t, s, abi.Request{Op: abi.OpStat, Path: "/"})
	if r.Infos[0].Mode != DMDIR|0o555 {
		t.Errorf("stat /: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpStat, Path: "/nothing"}); r.Err != "file not found" {
		t.Errorf("stat /nothing: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpStat, Path: "/static/x"}); r.Err != "not a directory" {
		t.Errorf("stat /static/x: %+v", r)
	}
	r = do(t, s, abi.Request{Op: abi.OpReadDir, Path: "/"})
	var names []string
	for _, in := range r.Infos {
		names = append(names, in.Name)
	}
	if !slices.Equal(names, []string{"static", "who", "ctl", "value", "upper", "items"}) {
		t.Errorf("readdir /: %q", names)
	}

	// Open, read (with end of file reported), close.
	r = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/who", Mode: uint32(OREAD), User: "glenda"})
	h := r.Handle
	if r.Err != "" || h == 0 {
		t.Fatalf("open /who: %+v", r)
	}
	r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 100})
	if string(r.Data) != "glenda" || r.Count != 1 {
		t.Errorf("read /who: %+v", r)
	}
	r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 3})
	if string(r.Data) != "gle" || r.Count != 0 {
		t.Errorf("short read /who: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpClose, Handle: h}); r.Err != "" {
		t.Errorf("close: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 3}); r.Err != "unknown handle" {
		t.Errorf("read after close: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/static", Mode: uint32(OWRITE)}); r.Err != "permission denied" {
		t.Errorf("open static for writing: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/items", Mode: uint32(OREAD)}); r.Err != string(ErrIsDir) {
		t.Errorf("open a directory: %+v", r)
	}

	// Ctl: each write at once.
	h = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/ctl", Mode: uint32(ORDWR)}).Handle
	if r = do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("one")}); r.Err != "" || r.Count != 3 {
		t.Errorf("ctl write: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("bad")}); r.Err != string(ErrBadCtl) {
		t.Errorf("bad ctl write: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 100}); string(r.Data) != "status\n" {
		t.Errorf("ctl read: %+v", r)
	}
	do(t, s, abi.Request{Op: abi.OpClose, Handle: h})
	if !slices.Equal(*log, []string{"one"}) {
		t.Errorf("ctl log %q", *log)
	}

	// ReadWrite: committed at close, refused commit is the close's error.
	h = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/value", Mode: uint32(OWRITE | OTRUNC)}).Handle
	do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("v1")})
	if r = do(t, s, abi.Request{Op: abi.OpClose, Handle: h}); r.Err != "" {
		t.Errorf("commit: %+v", r)
	}
	h = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/value", Mode: uint32(ORDWR)}).Handle
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 10}); string(r.Data) != "v1" {
		t.Errorf("value: %+v", r)
	}
	do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("refuse")})
	if r = do(t, s, abi.Request{Op: abi.OpClose, Handle: h}); r.Err != "refused" {
		t.Errorf("refused commit: %+v", r)
	}

	// Filter: write, then read the output on the same open.
	h = do(t, s, abi.Request{Op: abi.OpOpen, Path: "/upper", Mode: uint32(ORDWR)}).Handle
	do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("abc")})
	do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Offset: 3, Data: []byte("def")})
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 100}); string(r.Data) != "ABCDEF" {
		t.Errorf("filter: %+v", r)
	}
	do(t, s, abi.Request{Op: abi.OpWrite, Handle: h, Data: []byte("x")})
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: h, Count: 100}); string(r.Data) != "X" {
		t.Errorf("filter, second input: %+v", r)
	}

	// Create and remove through the hooks.
	r = do(t, s, abi.Request{Op: abi.OpCreate, Path: "/items/a", Mode: 0o644, Count: uint32(OREAD)})
	if r.Err != "" || r.Handle == 0 || len(r.Infos) != 1 || r.Infos[0].Name != "a" {
		t.Fatalf("create: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpRead, Handle: r.Handle, Count: 100}); string(r.Data) != "new a" {
		t.Errorf("read created: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpCreate, Path: "/items/a", Mode: 0o644}); r.Err != string(ErrExist) {
		t.Errorf("create again: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpCreate, Path: "/new", Mode: 0o644}); r.Err != string(ErrCreate) {
		t.Errorf("create in root: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpRemove, Path: "/items/a"}); r.Err != "" {
		t.Errorf("remove: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpStat, Path: "/items/a"}); r.Err != "file not found" {
		t.Errorf("stat removed: %+v", r)
	}
	if r = do(t, s, abi.Request{Op: abi.OpRemove, Path: "/static"}); r.Err != string(ErrRemove) {
		t.Errorf("remove static: %+v", r)
	}

	// Garbage.
	var resp abi.Response
	if err := resp.Unmarshal(s.call([]byte{1, 2, 3})); err != nil || resp.Err == "" {
		t.Errorf("garbage request: %+v, %v", resp, err)
	}
	if r = do(t, s, abi.Request{Op: 99}); r.Err == "" {
		t.Errorf("unknown op: %+v", r)
	}
}

func TestErrorsMatchFS(t *testing.T) {
	if !errors.Is(ErrNotFound, fs.ErrNotExist) || !errors.Is(ErrPerm, fs.ErrPermission) || !errors.Is(ErrExist, fs.ErrExist) {
		t.Error("standard errors do not match io/fs's")
	}
	if errors.Is(ErrBadCtl, fs.ErrNotExist) {
		t.Error("ErrBadCtl matches fs.ErrNotExist")
	}
}

func TestHostCallsOutsideModule(t *testing.T) {
	if _, err := ReadFile("/x"); !errors.Is(err, ErrNotModule) {
		t.Errorf("ReadFile: %v", err)
	}
	if _, _, err := HTTP("GET", "http://x", nil); !errors.Is(err, ErrNotModule) {
		t.Errorf("HTTP: %v", err)
	}
}

func TestReadAtEOF(t *testing.T) {
	m := &memFile{data: []byte("abc")}
	p := make([]byte, 10)
	if n, err := m.ReadAt(p, 0); n != 3 || err != io.EOF {
		t.Errorf("read all: %d, %v", n, err)
	}
	if n, err := m.ReadAt(p[:2], 0); n != 2 || err != nil {
		t.Errorf("read part: %d, %v", n, err)
	}
	if n, err := m.ReadAt(p, 5); n != 0 || err != io.EOF {
		t.Errorf("read past end: %d, %v", n, err)
	}
}

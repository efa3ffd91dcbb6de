package fusemount

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/srv9p"
)

// memFS is an in-memory tree served by 9fans.net/go/plan9/srv9p (a port
// of Plan 9's lib9p, with real Tflush: a flushed request's context is
// cancelled). All state is under mu.
type memFS struct {
	mu       sync.Mutex
	root     *memFile
	nextPath uint64
	changed  chan struct{} // closed and replaced when an event file grows
	maxWrite int           // largest Twrite seen
	maxRead  int           // largest Tread of a regular file seen

	blocked chan string // an event read blocked (name)
	flushed chan string // a blocked event read was flushed (name)

	// holdShort, if set, makes each read of a short file send on it and
	// wait for it to be closed or received from again.
	holdShort chan chan struct{}
}

type fileKind int

const (
	regular   fileKind = iota
	generated          // stat length 0, content generated on read
	event              // stat length 0, reads past the end block
	short              // stat length declared, reads give less (data only)
)

type memFile struct {
	name     string
	qid      plan9.Qid
	mode     plan9.Perm
	mtime    uint32
	kind     fileKind
	data     []byte
	declared uint64   // the stat length of a short file
	parent   *memFile // nil once removed (the root is its own parent)
	children []*memFile
}

// fidState is the Aux of a srv9p fid.
type fidState struct {
	f   *memFile
	dir []plan9.Dir // listing taken at open, for directories
}

func newMemFS() *memFS {
	m := &memFS{
		changed: make(chan struct{}),
		blocked: make(chan string, 16),
		flushed: make(chan string, 16),
	}
	m.root = &memFile{name: "/", qid: plan9.Qid{Type: plan9.QTDIR}, mode: plan9.DMDIR | 0777, mtime: now()}
	m.root.parent = m.root
	return m
}

func now() uint32 { return uint32(time.Now().Unix()) }

func (m *memFS) newFile(parent *memFile, name string, perm plan9.Perm) *memFile {
	m.nextPath++
	f := &memFile{name: name, mode: perm, mtime: now(), parent: parent}
	f.qid.Path = m.nextPath
	if perm&plan9.DMDIR != 0 {
		f.qid.Type = plan9.QTDIR
	}
	if perm&plan9.DMAPPEND != 0 {
		f.qid.Type |= plan9.QTAPPEND
	}
	parent.children = append(parent.children, f)
	parent.qid.Vers++
	return f
}

// add adds a file at the slash-separated path (parents must exist).
func (m *memFS) add(path string, kind fileKind, perm plan9.Perm, data string) *memFile {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir := m.root
	elems := strings.Split(path, "/")
	for _, e := range elems[:len(elems)-1] {
		dir = lookup(dir, e)
	}
	f := m.newFile(dir, elems[len(elems)-1], perm)
	f.kind = kind
	f.data = []byte(data)
	return f
}

// get returns a copy of the data of the file at path, and whether it exists.
func (m *memFS) get(path string) (data string, mode plan9.Perm, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.root
	for _, e := range strings.Split(path, "/") {
		if f = lookup(f, e); f == nil {
			return "", 0, false
		}
	}
	return string(f.data), f.mode, true
}

// names lists the directory at path.
func (m *memFS) names(path string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.root
	if path != "" {
		for _, e := range strings.Split(path, "/") {
			f = lookup(f, e)
		}
	}
	var names []string
	for _, c := range f.children {
		names = append(names, c.name)
	}
	return names
}

// set replaces the data of the file at path, as another client would.
func (m *memFS) set(path string, data string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.root
	for _, e := range strings.Split(path, "/") {
		f = lookup(f, e)
	}
	f.data = []byte(data)
	f.qid.Vers++
	f.mtime = now()
}

// appendEvent appends to an event file and wakes its readers.
func (m *memFS) appendEvent(f *memFile, s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f.data = append(f.data, s...)
	close(m.changed)
	m.changed = make(chan struct{})
}

func lookup(dir *memFile, name string) *memFile {
	if name == ".." {
		return dir.parent
	}
	for _, c := range dir.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (f *memFile) stat() plan9.Dir {
	d := plan9.Dir{
		Qid:   f.qid,
		Mode:  f.mode,
		Atime: f.mtime,
		Mtime: f.mtime,
		Name:  f.name,
		Uid:   "glenda",
		Gid:   "glenda",
		Muid:  "glenda",
	}
	if f.kind == regular && f.mode&plan9.DMDIR == 0 {
		d.Length = uint64(len(f.data))
	}
	if f.kind == short {
		d.Length = f.declared
	}
	return d
}

var (
	errNotFound = errors.New("file not found")
	errExist    = errors.New("file already exists")
	errNotEmpty = errors.New("directory is not empty")
	errPerm     = errors.New("permission denied")
	errRemoved  = errors.New("file has been removed")
)

// server returns the srv9p server of the tree.
func (m *memFS) server() *srv9p.Server {
	aux := func(fid *srv9p.Fid) *fidState { return fid.Aux().(*fidState) }
	return &srv9p.Server{
		Msize: DefaultMsize,
		Attach: func(ctx context.Context, fid, afid *srv9p.Fid, user, aname string) (plan9.Qid, error) {
			fid.SetAux(&fidState{f: m.root})
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.root.qid, nil
		},
		Walk: func(ctx context.Context, fid, newfid *srv9p.Fid, names []string) ([]plan9.Qid, error) {
			return srv9p.Walk(fid, newfid, names,
				func(old, new *srv9p.Fid) error {
					new.SetAux(&fidState{f: aux(old).f})
					return nil
				},
				func(f *srv9p.Fid, name string) (plan9.Qid, error) {
					m.mu.Lock()
					defer m.mu.Unlock()
					dir := aux(f).f
					if dir.parent == nil {
						return plan9.Qid{}, errRemoved
					}
					c := lookup(dir, name)
					if c == nil {
						return plan9.Qid{}, errNotFound
					}
					f.SetAux(&fidState{f: c})
					return c.qid, nil
				})
		},
		Open: func(ctx context.Context, fid *srv9p.Fid, mode uint8) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			st := aux(fid)
			f := st.f
			if f.mode&plan9.DMDIR != 0 {
				for _, c := range f.children {
					st.dir = append(st.dir, c.stat())
				}
				return nil
			}
			if mode&plan9.OTRUNC != 0 && f.kind == regular {
				f.data = nil
				f.qid.Vers++
				f.mtime = now()
			}
			return nil
		},
		Create: func(ctx context.Context, fid *srv9p.Fid, name string, perm plan9.Perm, mode uint8) (plan9.Qid, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			dir := aux(fid).f
			if dir.parent == nil {
				return plan9.Qid{}, errRemoved
			}
			if name == "." || name == ".." || strings.Contains(name, "/") {
				return plan9.Qid{}, errors.New("bad character in file name")
			}
			if lookup(dir, name) != nil {
				return plan9.Qid{}, errExist
			}
			f := m.newFile(dir, name, perm)
			fid.SetAux(&fidState{f: f})
			return f.qid, nil
		},
		Read: func(ctx context.Context, fid *srv9p.Fid, data []byte, off int64) (int, error) {
			st := aux(fid)
			m.mu.Lock()
			defer m.mu.Unlock()
			if fid.Qid().Type&plan9.QTDIR != 0 {
				return fid.ReadDir(data, off, func(i int, d *plan9.Dir) bool {
					if i >= len(st.dir) {
						return false
					}
					*d = st.dir[i]
					return true
				})
			}
			f := st.f
			switch f.kind {
			case short:
				if m.holdShort != nil {
					release := make(chan struct{})
					m.mu.Unlock()
					m.holdShort <- release
					<-release
					m.mu.Lock()
				}
			case generated:
				return fid.ReadString(data, off, "generated "+f.name+"\n")
			case event:
				for off >= int64(len(f.data)) {
					ch := m.changed
					m.mu.Unlock()
					select {
					case m.blocked <- f.name:
					default:
					}
					select {
					case <-ch:
						m.mu.Lock()
					case <-ctx.Done():
						select {
						case m.flushed <- f.name:
						default:
						}
						m.mu.Lock()
						return 0, ctx.Err()
					}
				}
			}
			if f.kind == regular {
				m.maxRead = max(m.maxRead, len(data))
			}
			return fid.ReadBytes(data, off, f.data)
		},
		Write: func(ctx context.Context, fid *srv9p.Fid, data []byte, off int64) (int, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			f := aux(fid).f
			m.maxWrite = max(m.maxWrite, len(data))
			switch f.kind {
			case generated:
				return 0, errors.New("write prohibited")
			case event:
				f.data = append(f.data, data...)
				close(m.changed)
				m.changed = make(chan struct{})
				return len(data), nil
			}
			if f.mode&plan9.DMAPPEND != 0 {
				off = int64(len(f.data))
			}
			if end := int(off) + len(data); end > len(f.data) {
				f.data = append(f.data, make([]byte, end-len(f.data))...)
			}
			copy(f.data[off:], data)
			f.qid.Vers++
			f.mtime = now()
			return len(data), nil
		},
		Stat: func(ctx context.Context, fid *srv9p.Fid) (*plan9.Dir, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			d := aux(fid).f.stat()
			return &d, nil
		},
		Wstat: func(ctx context.Context, fid *srv9p.Fid, d *plan9.Dir) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			f := aux(fid).f
			if d.Name != "" && d.Name != f.name {
				if f.parent == f || f.parent == nil {
					return errPerm
				}
				if lookup(f.parent, d.Name) != nil {
					return errExist
				}
			}
			if ^d.Length != 0 && f.mode&plan9.DMDIR != 0 && d.Length != 0 {
				return errors.New("bad length for a directory")
			}
			if d.Name != "" && d.Name != f.name {
				f.name = d.Name
				f.parent.qid.Vers++
			}
			if ^d.Length != 0 {
				n := int(d.Length)
				if n <= len(f.data) {
					f.data = f.data[:n]
				} else {
					f.data = append(f.data, make([]byte, n-len(f.data))...)
				}
				f.qid.Vers++
			}
			if ^d.Mode != 0 {
				f.mode = f.mode&^0777 | d.Mode&0777
			}
			if ^d.Mtime != 0 {
				f.mtime = d.Mtime
			}
			return nil
		},
		Remove: func(ctx context.Context, fid *srv9p.Fid) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			f := aux(fid).f
			switch {
			case f.parent == f:
				return errPerm
			case f.parent == nil:
				return errRemoved
			case len(f.children) > 0:
				return errNotEmpty
			}
			p := f.parent
			for i, c := range p.children {
				if c == f {
					p.children = append(p.children[:i], p.children[i+1:]...)
					break
				}
			}
			p.qid.Vers++
			f.parent = nil
			return nil
		},
	}
}

// listen serves the tree on a loopback TCP port until the test ends and
// returns its dial string.
func (m *memFS) listen(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := m.server()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.Serve(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	a := l.Addr().(*net.TCPAddr)
	return fmt.Sprintf("tcp!%s!%d", a.IP, a.Port)
}

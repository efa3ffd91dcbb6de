// Package bench measures cheshire's 9P engine (package styx) side by
// side with two other Go 9P2000 servers, github.com/knusbaum/go9p/fs and
// 9fans.net/go/plan9/srv9p, serving the same tree on TCP loopback, and
// measures the loopback round trip as the floor. cmd/cheshire-bench and
// this package's Go benchmarks both use it; its tests also run styx's
// client against the other two servers.
//
// Every measurement drives the servers with styx's own client, so the
// numbers compare servers, not clients.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"cheshire/providers/tmp"
	"cheshire/styx"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/srv9p"
	"github.com/knusbaum/go9p"
	gofs "github.com/knusbaum/go9p/fs"
	"github.com/knusbaum/go9p/proto"
)

// User is the user name every server's tree belongs to and every
// measurement attaches as.
const User = "bench"

// Tree describes the files a benchmark server is populated with:
//
//	/small        SmallSize bytes
//	/big          BigSize bytes (absent when 0)
//	/stat/f0000…  NStat empty files
//	/list/e00000… NList empty files
//	/w/           an empty directory the write measurement creates in
//
// All files are mode 0666 and directories 0777, owned by User.
type Tree struct {
	SmallSize int
	BigSize   int64
	NStat     int
	NList     int
}

// StatName and ListName name the files of /stat and /list.
func StatName(i int) string { return fmt.Sprintf("f%04d", i) }

// ListName names the i'th file of /list.
func ListName(i int) string { return fmt.Sprintf("e%05d", i) }

// Pattern returns n bytes of a fixed, position-dependent pattern: the
// contents of /small and /big.
func Pattern(n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// A Server is one 9P server listening on TCP loopback.
type Server struct {
	Name string // "cheshire", "go9p" or "srv9p"
	Addr string // host:port

	mu     sync.Mutex
	l      net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	remote bool
	stop   func()
	wg     sync.WaitGroup
}

// DialString is Addr in styx.Dial's syntax.
func (s *Server) DialString() string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return "tcp!" + host + "!" + port
}

// Remote describes a server run elsewhere (another process, say) at
// addr; Close calls stop.
func Remote(name, addr string, stop func()) *Server {
	return &Server{Name: name, Addr: addr, stop: stop, remote: true}
}

// Close stops the server and ends its connections.
func (s *Server) Close() {
	if s.remote {
		s.mu.Lock()
		done := s.closed
		s.closed = true
		s.mu.Unlock()
		if !done && s.stop != nil {
			s.stop()
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.l.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// acceptLoop serves each accepted connection with serve, tracking it so
// Close can end it.
func (s *Server) acceptLoop(serve func(net.Conn)) {
	s.conns = make(map[net.Conn]struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := s.l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				nc.Close()
				return
			}
			s.conns[nc] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				serve(nc)
				nc.Close()
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
			}()
		}
	}()
}

// StartCheshire serves t from a providers/tmp tree with a styx.Server
// whose limits are the defaults.
func StartCheshire(t Tree) (*Server, error) {
	fs, err := CheshireTree(t)
	if err != nil {
		return nil, err
	}
	l, err := listen()
	if err != nil {
		return nil, err
	}
	srv := &styx.Server{Attacher: fs}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Name: "cheshire", Addr: l.Addr().String(), l: l}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	s.stop = func() { cancel(); srv.Close(); <-done }
	s.conns = map[net.Conn]struct{}{}
	return s, nil
}

// CheshireTree builds t in a new providers/tmp tree owned by User.
func CheshireTree(t Tree) (*tmp.FS, error) {
	ctx := context.Background()
	fs := tmp.New(User)
	root, err := fs.Attach(ctx, User, "", nil)
	if err != nil {
		return nil, err
	}
	create := func(dir styx.File, name string, perm uint32, data []byte) (styx.File, error) {
		mode := styx.ORDWR
		if perm&styx.DMDIR != 0 {
			mode = styx.OREAD
		}
		f, _, err := dir.Create(ctx, name, perm, mode)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		for off := 0; off < len(data); off += 8 << 20 {
			chunk := data[off:min(off+8<<20, len(data))]
			if _, err := f.Write(ctx, chunk, int64(off)); err != nil {
				return nil, fmt.Errorf("write %s: %w", name, err)
			}
		}
		return f, nil
	}
	if _, err := create(root, "small", 0666, Pattern(int64(t.SmallSize))); err != nil {
		return nil, err
	}
	if t.BigSize > 0 {
		if _, err := create(root, "big", 0666, Pattern(t.BigSize)); err != nil {
			return nil, err
		}
	}
	for _, d := range []struct {
		name string
		n    int
		elem func(int) string
	}{{"stat", t.NStat, StatName}, {"list", t.NList, ListName}, {"w", 0, nil}} {
		dir, err := create(root, d.name, styx.DMDIR|0777, nil)
		if err != nil {
			return nil, err
		}
		for i := 0; i < d.n; i++ {
			if _, err := create(dir, d.elem(i), 0666, nil); err != nil {
				return nil, err
			}
		}
	}
	return fs, nil
}

// StartGo9p serves t with github.com/knusbaum/go9p/fs (static files and
// directories, creation and removal enabled), one go9p.ServeReadWriter
// per connection over a bufio.Reader, as go9p.Serve does.
func StartGo9p(t Tree) (*Server, error) {
	fs, root := gofs.NewFS(User, User, 0777,
		gofs.WithCreateFile(gofs.CreateStaticFile),
		gofs.WithCreateDir(gofs.CreateStaticDir),
		gofs.WithRemoveFile(gofs.RMFile))
	add := func(d *gofs.StaticDir, n gofs.FSNode) error { return d.AddChild(n) }
	file := func(name string, data []byte) *gofs.StaticFile {
		return gofs.NewStaticFile(fs.NewStat(name, User, User, 0666), data)
	}
	if err := add(root, file("small", Pattern(int64(t.SmallSize)))); err != nil {
		return nil, err
	}
	if t.BigSize > 0 {
		if err := add(root, file("big", Pattern(t.BigSize))); err != nil {
			return nil, err
		}
	}
	for _, d := range []struct {
		name string
		n    int
		elem func(int) string
	}{{"stat", t.NStat, StatName}, {"list", t.NList, ListName}, {"w", 0, nil}} {
		dir := gofs.NewStaticDir(fs.NewStat(d.name, User, User, proto.DMDIR|0777))
		if err := add(root, dir); err != nil {
			return nil, err
		}
		for i := 0; i < d.n; i++ {
			if err := add(dir, file(d.elem(i), nil)); err != nil {
				return nil, err
			}
		}
	}
	l, err := listen()
	if err != nil {
		return nil, err
	}
	srv := fs.Server()
	s := &Server{Name: "go9p", Addr: l.Addr().String(), l: l}
	s.acceptLoop(func(nc net.Conn) { go9p.ServeReadWriter(bufio.NewReader(nc), nc, srv) })
	return s, nil
}

// ramFile is the content of a srv9p file.
type ramFile struct {
	mu   sync.RWMutex
	data []byte
}

// Srv9pMsize is the msize offered by StartSrv9p's server: the same as
// styx's default, so sequential I/O compares like with like (srv9p's
// own default is 8 KiB).
const Srv9pMsize = styx.DefaultMsize

// StartSrv9p serves t with 9fans.net/go/plan9/srv9p: a srv9p.Tree with a
// RAM file behind each file, in the manner of srv9p's ramfs test, one
// Server.Serve per connection on the raw net.Conn.
func StartSrv9p(t Tree) (*Server, error) {
	srv := Srv9pServer(t, Srv9pMsize)
	l, err := listen()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: "srv9p", Addr: l.Addr().String(), l: l}
	s.acceptLoop(func(nc net.Conn) { srv.Serve(nc, nc) })
	return s, nil
}

// Srv9pServer returns a srv9p.Server for t offering msize.
func Srv9pServer(t Tree, msize uint32) *srv9p.Server {
	tree := srv9p.NewTree(User, User, plan9.DMDIR|0777, nil)
	mk := func(dir *srv9p.File, name string, perm plan9.Perm, data []byte) *srv9p.File {
		var aux any
		if perm&plan9.DMDIR == 0 {
			aux = &ramFile{data: data}
		}
		f, err := dir.Create(name, User, perm, aux)
		if err != nil {
			panic(err) // fresh tree: names are unique
		}
		return f
	}
	mk(tree.Root, "small", 0666, Pattern(int64(t.SmallSize)))
	if t.BigSize > 0 {
		mk(tree.Root, "big", 0666, Pattern(t.BigSize))
	}
	for _, d := range []struct {
		name string
		n    int
		elem func(int) string
	}{{"stat", t.NStat, StatName}, {"list", t.NList, ListName}, {"w", 0, nil}} {
		dir := mk(tree.Root, d.name, plan9.DMDIR|0777, nil)
		for i := 0; i < d.n; i++ {
			mk(dir, d.elem(i), 0666, nil)
		}
	}
	rf := func(fid *srv9p.Fid) (*ramFile, error) {
		f := fid.File()
		if f == nil {
			return nil, errors.New("no file")
		}
		r, ok := f.Aux.(*ramFile)
		if !ok {
			return nil, errors.New("is a directory")
		}
		return r, nil
	}
	return &srv9p.Server{
		Tree:  tree,
		Msize: msize,
		Open: func(ctx context.Context, fid *srv9p.Fid, mode uint8) error {
			if mode&plan9.OTRUNC == 0 || fid.Qid().Type&plan9.QTDIR != 0 {
				return nil
			}
			r, err := rf(fid)
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.data = nil
			r.mu.Unlock()
			return nil
		},
		Create: func(ctx context.Context, fid *srv9p.Fid, name string, perm plan9.Perm, mode uint8) (plan9.Qid, error) {
			var aux any
			if perm&plan9.DMDIR == 0 {
				aux = new(ramFile)
			}
			f, err := fid.File().Create(name, User, perm, aux)
			if err != nil {
				return plan9.Qid{}, err
			}
			fid.SetFile(f)
			return f.Stat.Qid, nil
		},
		Read: func(ctx context.Context, fid *srv9p.Fid, p []byte, off int64) (int, error) {
			r, err := rf(fid)
			if err != nil {
				return 0, err
			}
			r.mu.RLock()
			defer r.mu.RUnlock()
			return fid.ReadBytes(p, off, r.data)
		},
		Write: func(ctx context.Context, fid *srv9p.Fid, p []byte, off int64) (int, error) {
			r, err := rf(fid)
			if err != nil {
				return 0, err
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			end := int(off) + len(p)
			if end > len(r.data) {
				r.data = slices.Grow(r.data, end-len(r.data))[:end]
			}
			copy(r.data[off:], p)
			return len(p), nil
		},
		Stat: func(ctx context.Context, fid *srv9p.Fid) (*plan9.Dir, error) {
			f := fid.File()
			if f == nil {
				return nil, errors.New("stat prohibited")
			}
			d := f.Stat
			if r, ok := f.Aux.(*ramFile); ok {
				r.mu.RLock()
				d.Length = uint64(len(r.data))
				r.mu.RUnlock()
			}
			return &d, nil
		},
		Remove: func(ctx context.Context, fid *srv9p.Fid) error { return nil },
	}
}

// Start starts the server named name: "cheshire", "go9p" or "srv9p".
func Start(name string, t Tree) (*Server, error) {
	switch name {
	case "cheshire":
		return StartCheshire(t)
	case "go9p":
		return StartGo9p(t)
	case "srv9p":
		return StartSrv9p(t)
	}
	return nil, fmt.Errorf("unknown server %q", name)
}

// Names lists the servers Start knows, ours first.
var Names = []string{"cheshire", "go9p", "srv9p"}

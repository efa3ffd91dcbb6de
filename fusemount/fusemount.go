// Package fusemount mounts a 9P2000 server on a Linux directory through
// FUSE, so that ordinary programs can use the served namespace.
//
// Every 9P request is made with the context of the FUSE request that
// caused it, so interrupting a process (^C) in a blocked read or write
// interrupts the FUSE request, which flushes the 9P request.
//
// # Caching
//
// Names are cached for EntryTimeout (default 1s); failed lookups are
// not cached. Attributes are cached for AttrTimeout (default 1s), except
// for files whose attributes cannot be trusted for long: regular files of
// length 0 (synthetic files: generated content, event streams) and files
// whose qid version changed since it was last seen get an attribute
// timeout of 0, so every stat goes to the server.
//
// File data goes through the kernel's page cache only for regular files
// whose stat length is nonzero at open. The cache is kept across opens
// only while qid.vers, length and mtime are unchanged, and is dropped as
// soon as this mount writes or truncates the file. Files of length 0 at
// open, and every file opened with O_APPEND, are opened with
// FOPEN_DIRECT_IO: each read(2) is one Tread whose reply, however short,
// is what the reader gets (so cat reads generated files to their end,
// and a read of an event file blocks until data arrives), and each
// write(2) is one Twrite. O_APPEND writes go to the file's length as the
// server reports it just before the write.
//
// Cached files are read ahead of a sequential reader: the mount asks
// the kernel for a readahead of Options.ReadAhead (4 MiB; the kernel
// takes it from root only, through sysfs, and otherwise keeps 128 KiB),
// so that the kernel sends 1 MiB READs, several at once. When the
// kernel's READs are smaller than the iounit, each open file reads ahead
// itself: up to 4 Treads of an iounit in flight past the kernel's READ,
// from a pool of 16 buffers per mount (16 MiB with the default msize),
// dropped when this mount writes the file or sees a new qid version.
//
// A cached file that ends before its stat length (a synthetic file that
// declares a length it does not serve) reads as what the server serves,
// never padded with NUL bytes: the kernel shrinks the file to a short
// read's end unless attributes of the file reached it while the read was
// in flight, so replies that carry a file's attributes wait for its
// cached reads; and once a file has read short at a qid version, it is
// opened with FOPEN_DIRECT_IO until that version changes.
//
// # Mapping
//
// Inode numbers are qid.path+1. DMDIR files are directories and all
// others regular files, with the permission bits of the 9P mode. Every
// file belongs to the user and group of the mounting process. Renames
// work only within a directory (Twstat of the name); across directories
// they fail with EXDEV, and mv(1) then copies and removes. Flush and
// fsync do nothing: writes are written through, and a 9P clunk happens at
// the last close (FUSE release), whose error cannot be reported.
//
// What 9P2000 cannot say fails rather than being dropped: a chown to
// another owner, and a mode with setuid, setgid or sticky bits, fail
// with EPERM; so do symlink, link and mknod of anything but a regular
// file (FIFOs, devices, sockets). Times are whole seconds. ctime is the
// mtime, or the time this mount last changed the file's metadata if
// later. Directories have one link; a file removed through the mount
// has none. README.md tables each limit with its errno.
package fusemount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"cheshire/plan9"
	"cheshire/styx"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// DefaultMsize is the message size asked for when Options.Msize is 0:
// room for 1 MiB of data, so that one FUSE read or write of the largest
// size is one Tread or Twrite.
const DefaultMsize = maxIO + styx.IOHdrSz

// maxIO is the largest FUSE read or write (the kernel's limit too).
const maxIO = 1 << 20

// DefaultReadAhead is the kernel readahead asked for when
// Options.ReadAhead is 0.
const DefaultReadAhead = 4 << 20

// defaultTimeout is the default attribute and entry timeout.
const defaultTimeout = time.Second

// Options for Mount.
type Options struct {
	Addr  string // dial string of the 9P server: tcp!host!port, unix!/path
	Uname string // user to attach as (default: $USER, or "none")
	Aname string // tree to attach
	// Dial connects to Addr (default plan9.Dial): set it for transports
	// that need keys, such as 9P over TLS.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// Msize is the 9P message size to ask for (default DefaultMsize).
	Msize uint32

	// AttrTimeout and EntryTimeout bound how long the kernel trusts
	// attributes and names it has been told. Zero means the default, 1s;
	// a negative value means no caching. See the package comment for the
	// files whose attributes are never cached.
	AttrTimeout, EntryTimeout time.Duration

	// AllowOther lets every user of the machine use the mount, not only
	// the one who mounted it (FUSE's allow_other; a user other than root
	// needs user_allow_other in /etc/fuse.conf). Every process still
	// reaches the node as Uname, over the mounting user's connection:
	// the node cannot tell them apart.
	AllowOther bool

	// DefaultPermissions has the kernel check each access against the
	// attributes the mount reports (FUSE's default_permissions): every
	// file belongs to the mounting user, so other users get the
	// permissions the 9P mode gives "other". Without it, only the node
	// checks, as Uname.
	DefaultPermissions bool

	// ReadAhead is how far ahead of a sequential reader the kernel
	// reads a cached file, in bytes (default DefaultReadAhead; negative:
	// the kernel's default, 128 KiB). The kernel takes a value above
	// 128 KiB only from a process that may write sysfs (root); for
	// others the default stays.
	ReadAhead int

	// Debug logs every FUSE request and reply to Log, at
	// slog.LevelDebug.
	Debug bool

	// Log receives warnings and the Debug trace. If nil, they go to
	// standard error when Debug is set and are discarded otherwise.
	Log *slog.Logger

	// attrWait, if set, is called when a reply carrying a file's
	// attributes is about to wait for the file's cached reads (tests).
	attrWait func()
}

// Mounted is a live FUSE mount of a 9P server, as returned by Mount. (It
// cannot be called Mount: that is the function.)
type Mounted struct {
	dir    string
	server *fuse.Server
	client *styx.Client
	done   chan struct{}
	mu     sync.Mutex // serializes Unmount
}

// Mount attaches to the 9P server o.Addr and mounts it on dir. It returns
// once the mount is live. ctx bounds the setup only; the mount lasts
// until Unmount, or until it is unmounted from outside (fusermount3 -u,
// umount). If the 9P connection fails, the mount stays and every
// operation on it fails with EIO.
func Mount(ctx context.Context, dir string, o Options) (*Mounted, error) {
	if o.Addr == "" {
		return nil, errors.New("fusemount: no server address")
	}
	lg := o.Log
	switch {
	case lg != nil:
	case o.Debug:
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		lg = slog.New(slog.DiscardHandler)
	}
	uname := o.Uname
	if uname == "" {
		uname = os.Getenv("USER")
	}
	if uname == "" {
		uname = "none"
	}
	msize := o.Msize
	if msize == 0 {
		msize = DefaultMsize
	}

	dial := o.Dial
	if dial == nil {
		dial = plan9.Dial
	}
	nc, err := dial(ctx, o.Addr)
	if err != nil {
		return nil, fmt.Errorf("fusemount: %w", err)
	}
	c, err := styx.NewClient(ctx, nc, styx.WithMsize(msize))
	if err != nil {
		return nil, fmt.Errorf("fusemount: %w", err)
	}
	rootFid, err := c.Attach(ctx, nil, uname, o.Aname)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("fusemount: attach %s as %s: %w", o.Addr, uname, err)
	}
	d, err := rootFid.Stat(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("fusemount: stat of root: %w", err)
	}
	if !isDir(&d) {
		c.Close()
		return nil, fmt.Errorf("fusemount: root of %s is not a directory", o.Addr)
	}

	fsys := &fsys{
		c:            c,
		uid:          uint32(os.Getuid()),
		gid:          uint32(os.Getgid()),
		attrTimeout:  timeout(o.AttrTimeout),
		entryTimeout: timeout(o.EntryTimeout),
		log:          lg,
		nodes:        make(map[fs.StableAttr]*node),
		attrWait:     o.attrWait,
	}
	// One FUSE write should be one Twrite: no larger than the iounit.
	maxWrite := min(maxIO, int(c.Msize()-styx.IOHdrSz))
	maxWrite = max(maxWrite&^4095, 4096)
	fsys.blksize = uint32(maxWrite)
	fsys.ra = newRAPool(int(c.Msize() - styx.IOHdrSz))
	root := fsys.newNode(stableAttr(&d), rootFid)
	root.isRoot = true
	fsys.nodes[root.key] = root

	stdlog := slog.NewLogLogger(lg.Handler(), slog.LevelDebug)
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       "cheshire",
			Name:         "cheshire",
			MaxWrite:     maxWrite,
			MaxReadAhead: maxWrite,
			// Replies are built from memory; splicing from the device
			// buys nothing.
			DisableSplice: true,
			// 9P has no extended attributes; ENOSYS once stops the
			// kernel from asking (for security.capability on every
			// write, among others).
			DisableXAttrs: true,
			// Let O_TRUNC reach Open (as OTRUNC) instead of the kernel
			// sending a SETATTR of size 0 (a Twstat that synthetic
			// files refuse).
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			// As root, mount(2) directly: no need for fusermount3.
			DirectMount: os.Geteuid() == 0,
			AllowOther:  o.AllowOther,
			Options:     mountOptions(o),
			Debug:       o.Debug,
			Logger:      stdlog,
		},
		// Timeouts are set per reply (see attrTimeoutFor); nil here,
		// or the bridge would replace a deliberate 0 by the default.
		AttrTimeout:     nil,
		EntryTimeout:    nil,
		NegativeTimeout: nil,
		NullPermissions: true,
		UID:             fsys.uid,
		GID:             fsys.gid,
		RootStableAttr:  &fs.StableAttr{Ino: root.key.Ino},
		Logger:          stdlog,
	}
	server, err := fuse.NewServer(fs.NewNodeFS(root, opts), dir, &opts.MountOptions)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("fusemount: mount %s: %w", dir, err)
	}
	m := &Mounted{dir: dir, server: server, client: c, done: make(chan struct{})}
	go func() {
		server.Serve()
		c.Close()
		close(m.done)
	}()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		c.Close()
		return nil, fmt.Errorf("fusemount: mount %s: %w", dir, err)
	}
	if ra := readAheadOf(o); ra > 0 {
		if err := setReadAhead(dir, ra); err != nil {
			lg.Debug("fusemount: readahead left at the kernel's default", "dir", dir, "err", err)
		}
	}
	go func() {
		select {
		case <-c.Done():
			select {
			case <-m.done:
			default:
				lg.Warn("fusemount: 9P connection lost; operations will fail until unmounted",
					"addr", o.Addr, "dir", dir, "err", c.Err())
			}
		case <-m.done:
		}
	}()
	return m, nil
}

// readAheadOf returns the kernel readahead o asks for, in bytes.
func readAheadOf(o Options) int {
	switch {
	case o.ReadAhead < 0:
		return 0
	case o.ReadAhead == 0:
		return DefaultReadAhead
	}
	return o.ReadAhead
}

// setReadAhead sets the kernel's readahead for the file system mounted
// on dir to ra bytes (rounded down to KiB), through the backing device's
// read_ahead_kb in sysfs. The kernel offers FUSE at most 128 KiB at
// INIT, which go-fuse cannot raise; only a process that may write sysfs
// (root) can.
func setReadAhead(dir string, ra int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(ra>>10)), 0); err != nil {
		return fmt.Errorf("readahead: %w", err)
	}
	return nil
}

// mountOptions returns the -o options of o that go-fuse has no field for.
func mountOptions(o Options) []string {
	if o.DefaultPermissions {
		return []string{"default_permissions"}
	}
	return nil
}

func timeout(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaultTimeout
	case d < 0:
		return 0
	}
	return d
}

// Unmount unmounts the file system and closes the 9P connection. It fails
// (EBUSY) while files on the mount are in use.
func (m *Mounted) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.server.Unmount(); err != nil {
		select {
		case <-m.done: // unmounted meanwhile from outside
			return nil
		default:
		}
		return fmt.Errorf("fusemount: unmount %s: %w", m.dir, err)
	}
	<-m.done
	return nil
}

// Wait returns once the file system has been unmounted, by Unmount or from
// outside.
func (m *Mounted) Wait() { <-m.done }

// UnmountDir unmounts the FUSE file system mounted on dir by any process:
// with fusermount3 -u, else fusermount -u, else umount(2).
func UnmountDir(dir string) error {
	var errs []error
	for _, bin := range []string{"fusermount3", "fusermount"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-u", dir).CombinedOutput()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s -u %s: %v: %s", bin, dir, err, bytes.TrimSpace(out)))
	}
	if err := syscall.Unmount(dir, 0); err != nil {
		errs = append(errs, fmt.Errorf("umount %s: %w", dir, err))
		return errors.Join(errs...)
	}
	return nil
}

// toErrno maps an error of the 9P client to the errno FUSE returns.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return syscall.EINTR
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	if errors.Is(err, plan9.ErrHungup) {
		return syscall.EIO
	}
	return plan9.Errno(err.Error())
}

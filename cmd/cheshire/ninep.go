package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

const ninepUsage = `usage: cheshire 9p [-a DIALSTRING [-k KEY]] [-u USER] [-A ANAME] COMMAND PATH
  -a DIALSTRING   the server (default: this user's node, unix!DIR/cheshire.sock)
  -k KEY          the server's key (its /node/id), for a tls! dial string
  -u USER         the user to attach as
  -A ANAME        the tree to attach

  ls [-l] PATH    list a directory (or name a file)
  read PATH       copy the file to standard output
  write [-l] PATH truncate the file and copy standard input to it (-l: one write a line)
  stat PATH       print the directory entry
  create PATH     create an empty file (mode 0664; a trailing / makes a directory)
  rm PATH         remove the file
  rdwr PATH       open for reading and writing: print what the file reads,
                  then write each line of standard input and print again
`

func ninepCmd(args []string) error {
	fs := flag.NewFlagSet("9p", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, ninepUsage) }
	addr := fs.String("a", defaultAddr(), "dial string of the server")
	uname := fs.String("u", userName(), "user to attach as")
	key := fs.String("k", "", "the server's key, for a tls! dial string (its /node/id)")
	aname := fs.String("A", "", "tree to attach (aname)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return errors.New("missing command or path")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := waitNode(dialer(*key))(dctx, *addr)
	if err != nil {
		cancel()
		return err
	}
	c, err := styx.NewClient(dctx, nc)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	root, err := c.Attach(ctx, nil, *uname, *aname)
	if err != nil {
		return fmt.Errorf("attach as %s: %w", *uname, err)
	}
	long, lines := false, false
	if len(rest) > 1 && (rest[0] == "-l") {
		long, lines = true, true
		rest = rest[1:]
	}
	if len(rest) != 1 {
		return fmt.Errorf("%s: want one path, have %d", cmd, len(rest))
	}
	p := rest[0]
	switch cmd {
	case "ls":
		return ninepLs(ctx, root, p, long)
	case "read":
		f, err := openPath(ctx, root, p, styx.OREAD)
		if err != nil {
			return err
		}
		defer f.Clunk(ctx)
		return copyOut(ctx, f, os.Stdout)
	case "write":
		// Truncated first, as plan9port's 9p write does: shorter text
		// replaces the file instead of leaving the old tail.
		f, err := openPath(ctx, root, p, styx.OWRITE|styx.OTRUNC)
		if errors.Is(err, plan9.ErrNotFound) {
			f, err = createPath(ctx, root, p, 0664, styx.OWRITE)
		}
		if err != nil {
			return err
		}
		if err := copyIn(ctx, f, os.Stdin, lines); err != nil {
			f.Clunk(ctx)
			return err
		}
		return wrap(p, f.Clunk(ctx))
	case "stat":
		f, err := root.WalkPath(ctx, p)
		if err != nil {
			return err
		}
		defer f.Clunk(ctx)
		d, err := f.Stat(ctx)
		if err != nil {
			return wrap(p, err)
		}
		fmt.Println(lsLine(d))
		return nil
	case "create":
		perm := uint32(0664)
		if strings.HasSuffix(p, "/") {
			perm = styx.DMDIR | 0775
		}
		f, err := createPath(ctx, root, strings.TrimSuffix(p, "/"), perm, styx.OREAD)
		if err != nil {
			return err
		}
		return f.Clunk(ctx)
	case "rm":
		f, err := root.WalkPath(ctx, p)
		if err != nil {
			return err
		}
		return wrap(p, f.Remove(ctx))
	case "rdwr":
		f, err := openPath(ctx, root, p, styx.ORDWR)
		if err != nil {
			return err
		}
		defer f.Clunk(ctx)
		return rdwr(ctx, f, os.Stdin, os.Stdout)
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", cmd)
}

func wrap(p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", p, err)
}

func openPath(ctx context.Context, root *styx.Fid, p string, mode uint8) (*styx.Fid, error) {
	f, err := root.WalkPath(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := f.Open(ctx, mode); err != nil {
		f.Clunk(ctx)
		return nil, wrap(p, err)
	}
	return f, nil
}

func createPath(ctx context.Context, root *styx.Fid, p string, perm uint32, mode uint8) (*styx.Fid, error) {
	dir, name := path.Split(p)
	f, err := root.WalkPath(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := f.Create(ctx, name, perm, mode); err != nil {
		f.Clunk(ctx)
		return nil, wrap(p, err)
	}
	return f, nil
}

func ninepLs(ctx context.Context, root *styx.Fid, p string, long bool) error {
	f, err := root.WalkPath(ctx, p)
	if err != nil {
		return err
	}
	defer f.Clunk(ctx)
	var ds []styx.Dir
	if f.Qid().Type&styx.QTDIR != 0 {
		if err := f.Open(ctx, styx.OREAD); err != nil {
			return wrap(p, err)
		}
		if ds, err = f.ReadDir(ctx); err != nil {
			return wrap(p, err)
		}
	} else {
		d, err := f.Stat(ctx)
		if err != nil {
			return wrap(p, err)
		}
		ds = []styx.Dir{d}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, d := range ds {
		if long {
			fmt.Fprintln(w, lsLine(d))
		} else {
			fmt.Fprintln(w, d.Name)
		}
	}
	return nil
}

// lsLine formats d as Plan 9's ls -l does.
func lsLine(d styx.Dir) string {
	t := time.Unix(int64(d.Mtime), 0)
	return fmt.Sprintf("%s %c %d %s %s %d %s %s", plan9.PermString(d.Mode), 'M', d.Dev, plan9.Quote(d.Uid),
		plan9.Quote(d.Gid), d.Length, t.Format("Jan _2 15:04"), plan9.Quote(d.Name))
}

func copyOut(ctx context.Context, f *styx.Fid, w io.Writer) error {
	buf := make([]byte, f.Iounit())
	var off int64
	for {
		n, err := f.ReadOnce(ctx, buf, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
}

func copyIn(ctx context.Context, f *styx.Fid, r io.Reader, lines bool) error {
	var off int64
	if lines {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), int(f.Iounit()))
		for sc.Scan() {
			line := append(sc.Bytes(), '\n')
			n, err := f.WriteAt(ctx, line, off)
			if err != nil {
				return err
			}
			off += int64(n)
		}
		return sc.Err()
	}
	buf := make([]byte, min(f.Iounit(), 1<<20))
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			w, err := f.WriteAt(ctx, buf[:n], off)
			if err != nil {
				return err
			}
			off += int64(w)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func rdwr(ctx context.Context, f *styx.Fid, r io.Reader, w io.Writer) error {
	show := func() error {
		buf := make([]byte, f.Iounit())
		n, err := f.ReadOnce(ctx, buf, 0)
		if err != nil {
			return err
		}
		_, err = w.Write(buf[:n])
		return err
	}
	if err := show(); err != nil {
		return err
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if _, err := f.WriteAt(ctx, append(sc.Bytes(), '\n'), 0); err != nil {
			fmt.Fprintf(os.Stderr, "write: %v\n", err)
			continue
		}
		if err := show(); err != nil {
			return err
		}
	}
	return sc.Err()
}

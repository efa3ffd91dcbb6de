package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cheshire/fusemount"
)

// readyFD is the descriptor on which a background mount reports success.
const readyFD = 3

func mountCmd(args []string) error {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	addr := fs.String("a", defaultAddr(), "dial string of the server")
	uname := fs.String("u", userName(), "user to attach as")
	aname := fs.String("A", "", "tree to attach (aname)")
	key := fs.String("k", "", "the server's key, for a tls! dial string (its /node/id)")
	fg := fs.Bool("f", false, "stay in the foreground until unmounted")
	debug := fs.Bool("D", false, "print FUSE traffic")
	fuseOpts := fs.String("o", "", "FUSE options, comma-separated: allow_other, default_permissions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: cheshire mount [-a DIALSTRING [-k KEY]] [-u USER] [-o allow_other,default_permissions] [-f] DIR")
	}
	var allowOther, defaultPerms bool
	for _, o := range strings.Split(*fuseOpts, ",") {
		switch o {
		case "":
		case "allow_other":
			allowOther = true
		case "default_permissions":
			defaultPerms = true
		default:
			return fmt.Errorf("mount: unknown option %q (allow_other, default_permissions)", o)
		}
	}
	dir := fs.Arg(0)
	if *debug && !*fg {
		return errors.New("-D needs -f: the trace goes to standard error, which a background mount has not")
	}
	if mounted, err := isMountPoint(dir); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("%s is already a mount point: cheshire umount %s first", dir, dir)
	}
	if !*fg {
		return mountBackground(args)
	}
	defer profileFromEnv()()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := fusemount.Mount(ctx, dir, fusemount.Options{Addr: *addr, Uname: *uname, Aname: *aname, Debug: *debug, Dial: waitNode(dialer(*key)),
		AllowOther: allowOther, DefaultPermissions: defaultPerms})
	if err != nil {
		return err
	}
	if ready := os.NewFile(readyFD, "ready"); os.Getenv("CHESHIRE_MOUNT_READY") == "1" && ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	go func() {
		<-ctx.Done()
		m.Unmount()
	}()
	m.Wait()
	return nil
}

// mountBackground runs the mount in a detached child and returns when
// the mount is live (or has failed, with the child's error).
func mountBackground(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, append([]string{"mount", "-f"}, args...)...)
	cmd.Env = append(os.Environ(), "CHESHIRE_MOUNT_READY=1")
	cmd.ExtraFiles = []*os.File{w}
	// The child's errors go to an unlinked file: a pipe would break (and
	// SIGPIPE the child) once this process has gone.
	errf, err := os.CreateTemp("", "cheshire-mount-*.err")
	if err != nil {
		return err
	}
	os.Remove(errf.Name())
	defer errf.Close()
	cmd.Stderr = errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if strings.TrimSpace(line) == "ok" {
		cmd.Process.Release()
		return nil
	}
	cmd.Wait()
	out, _ := os.ReadFile("/proc/self/fd/" + fmt.Sprint(errf.Fd()))
	msg := strings.TrimSpace(string(out))
	msg = strings.TrimPrefix(msg, "cheshire mount: ")
	if msg == "" {
		msg = "mount process exited"
	}
	return errors.New(msg)
}

func umountCmd(args []string) error {
	fs := flag.NewFlagSet("umount", flag.ContinueOnError)
	lazy := fs.Bool("z", false, "detach now, even if busy; the mount goes when its last file is closed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: cheshire umount [-z] DIR")
	}
	dir := fs.Arg(0)
	if *lazy {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err == nil {
			return nil
		}
		if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if mounted, err := isMountPoint(dir); err == nil && !mounted {
		return fmt.Errorf("%s is not a mount point", dir)
	}
	err := fusemount.UnmountDir(dir)
	if err != nil && (errors.Is(err, syscall.EBUSY) || strings.Contains(err.Error(), "busy")) {
		return fmt.Errorf("%s is busy: a process has a file open or its working directory in it; close it, or cheshire umount -z %s to detach now", dir, dir)
	}
	return err
}

// isMountPoint reports whether dir is the mount point of a mounted file
// system, from /proc/self/mountinfo.
func isMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, nil // not Linux: let the mount itself say
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT ...; octal escapes for space etc.
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == abs {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// waitNode wraps a dialer so that a local node still starting (its
// socket not yet there) is waited for, up to 5 s, and a node that is not
// running is named as such at once (its socket refuses).
func waitNode(dial func(ctx context.Context, addr string) (net.Conn, error)) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if !strings.HasPrefix(addr, "unix!") {
			return dial(ctx, addr)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			// No socket yet: a node starting. A socket that refuses is
			// a node that died (its socket left behind): no waiting.
			nc, err := dial(ctx, addr)
			if err == nil || !errors.Is(err, syscall.ENOENT) {
				if errors.Is(err, syscall.ECONNREFUSED) {
					return nil, fmt.Errorf("no node at %s: is `cheshire serve` running? (%v)", addr, err)
				}
				return nc, err
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("no node at %s: is `cheshire serve` running? (%v)", addr, err)
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

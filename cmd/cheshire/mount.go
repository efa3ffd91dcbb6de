package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"cheshire/cmd/cheshire/internal/fusemount"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: cheshire mount [-a DIALSTRING [-k KEY]] [-u USER] [-f] DIR")
	}
	dir := fs.Arg(0)
	if !*fg {
		return mountBackground(args)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := fusemount.Mount(ctx, dir, fusemount.Options{Addr: *addr, Uname: *uname, Aname: *aname, Debug: *debug, Dial: dialer(*key)})
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
	if len(args) != 1 {
		return errors.New("usage: cheshire umount DIR")
	}
	return fusemount.UnmountDir(args[0])
}

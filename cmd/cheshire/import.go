package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

const importUsage = `usage: cheshire import [-a DIALSTRING] [-u USER] [-b|--after] [-c] KEY [[REMOTEPATH] MOUNTPOINT]

Import what the node holding KEY exports into the namespace of USER on the
local node: KEY is found in the DHT, reached over mutual TLS and checked,
and its tree REMOTEPATH (all it exports to us by default) is mounted on
MOUNTPOINT (default /n/ and KEY's first 8 characters). This writes an
import line to /ns/ctl; the import is kept in the namespace file.
`

func importCmd(args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, importUsage) }
	addr := fs.String("a", defaultAddr(), "dial string of the local node")
	uname := fs.String("u", userName(), "user whose namespace gets the import")
	// -a is the node's address, as in every cheshire command, so the
	// union flags are -b, -c and --after.
	before := fs.Bool("b", false, "mount before what is at MOUNTPOINT (a union)")
	after := fs.Bool("after", false, "mount after what is at MOUNTPOINT (a union)")
	create := fs.Bool("c", false, "allow creation in the import")
	var flags string
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *before && *after:
		return errors.New("-b and --after exclude each other")
	case *before:
		flags = "b"
	case *after:
		flags = "a"
	}
	if *create {
		flags += "c"
	}
	var key, rpath, old string
	switch fs.NArg() {
	case 1:
		key = fs.Arg(0)
		old = "/n/" + key[:min(8, len(key))]
	case 2:
		key, old = fs.Arg(0), fs.Arg(1)
	case 3:
		key, rpath, old = fs.Arg(0), fs.Arg(1), fs.Arg(2)
	default:
		fs.Usage()
		return errors.New("want KEY [[REMOTEPATH] MOUNTPOINT]")
	}
	cmdArgs := []string{key}
	if rpath != "" {
		cmdArgs = append(cmdArgs, rpath)
	}
	line := plan9.NSCmd{Op: "import", Flags: flags, Args: append(cmdArgs, old)}.String() + "\n"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := styx.Dial(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	root, err := c.Attach(ctx, nil, *uname, "")
	if err != nil {
		return fmt.Errorf("attach as %s: %w", *uname, err)
	}
	f, err := openPath(ctx, root, "/ns/ctl", styx.OWRITE)
	if err != nil {
		return err
	}
	defer f.Clunk(ctx)
	if _, err := f.WriteAt(ctx, []byte(line), 0); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "import: "))
	}
	fmt.Println(old)
	return nil
}

// Command cheshire runs a cheshire node and talks to one: it serves a
// 9P2000 namespace (serve), mounts one with FUSE (mount, umount) and
// reads and writes its files from scripts (9p).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
)

// version is the program version, shown in /node/version.
var version = "0.1.0-dev"

const usage = `usage: cheshire COMMAND [ARGS]

commands:
  serve [--dir DIR] [--listen DIALSTRING]...   run a node
  mount [-a DIALSTRING [-k KEY]] [-u USER] [-o allow_other[,default_permissions]] [-f [-D]] DIR
                                                mount a namespace with FUSE
  umount [-z] DIR                               unmount it (-z: detach now, even if busy)
  9p [-a DIALSTRING] [-u USER] [-k KEY] ls|read|write|stat|create|rm|rdwr PATH
  import [-b|--after] [-c] KEY [[REMOTEPATH] MOUNTPOINT]   import another node's exports by key
  module build|sign|key|id|inspect ...          build and sign WebAssembly module packages
  ledger sign [LINE] | verify DIR_OR_PATH       sign ledger transactions; check a chain of blocks offline
  version

DIR defaults to $CHESHIRE_DIR, else ~/.cheshire; the node's socket is
unix!DIR/cheshire.sock, readable by its owner only.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serveCmd(args)
	case "mount":
		err = mountCmd(args)
	case "umount", "unmount":
		err = umountCmd(args)
	case "9p":
		err = ninepCmd(args)
	case "import":
		err = importCmd(args)
	case "module":
		err = moduleCmd(args)
	case "ledger":
		err = ledgerCmd(args)
	case "version":
		fmt.Println(version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "cheshire: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // the flag set has printed its usage
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cheshire %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// dataDir is $CHESHIRE_DIR, else ~/.cheshire.
func dataDir() string {
	if d := os.Getenv("CHESHIRE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".cheshire"
	}
	return filepath.Join(home, ".cheshire")
}

// defaultAddr is the local node's socket.
func defaultAddr() string { return "unix!" + filepath.Join(dataDir(), "cheshire.sock") }

// userName is the name to attach as: $USER, else the login name.
func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "none"
}

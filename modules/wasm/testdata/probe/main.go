// Probe is the test module of package wasm. Its files:
//
//	/ok     reads "ok"
//	/spin   reading it never ends
//	/panic  reading it panics
//	/nil    reading it dereferences nil
//	/read   write a namespace path, read back its content (or the error)
//	/write  write "PATH DATA", read back "ok" (or the error)
//	/stat   write a path, read back "NAME MODE SIZE"
//	/ls     write a path, read back the names in it, a line each
//	/http   write "METHOD URL [BODY]", read back "STATUS BODY"
//	/log    write a line for the module's log
//	/fs     write "OP ARGS", read back the result of an attack on the host
//	        through /data (see fsop), or the error
//	/sleep  reading it sleeps 30 seconds
//	/bomb   reading it allocates memory (and touches it) until it fails
//
// The tests package it under several manifests (loop, trap, nsprobe,
// sleepinit), so that one binary is compiled once. Under the name
// sleepinit, its initialization sleeps 30 seconds.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"cheshire/modules/sdk"
)

func main() {}

var sink int

type thing struct{ n int }

var nothing *thing

var hoard [][]byte

func init() {
	if len(os.Args) > 0 && os.Args[0] == "sleepinit" {
		time.Sleep(30 * time.Second)
	}
	arg := func(in []byte) string { return strings.TrimSpace(string(in)) }
	sdk.Serve(sdk.NewDir("/", 0o555,
		sdk.Static("ok", 0o444, []byte("ok\n")),
		sdk.Gen("spin", 0o444, func(ctx context.Context) ([]byte, error) {
			for i := 0; ; i++ {
				sink += i
			}
		}),
		sdk.Gen("panic", 0o444, func(ctx context.Context) ([]byte, error) {
			panic("trap: read of /panic")
		}),
		sdk.Gen("nil", 0o444, func(ctx context.Context) ([]byte, error) {
			return []byte{byte(nothing.n)}, nil
		}),
		sdk.Filter("read", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			return sdk.ReadFile(arg(in))
		}),
		sdk.Filter("write", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			path, data, _ := strings.Cut(arg(in), " ")
			if err := sdk.WriteFile(path, []byte(data)); err != nil {
				return nil, err
			}
			return []byte("ok"), nil
		}),
		sdk.Filter("stat", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			info, err := sdk.Stat(arg(in))
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "%s %o %d", info.Name, info.Mode, info.Size), nil
		}),
		sdk.Filter("ls", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			infos, err := sdk.ReadDir(arg(in))
			if err != nil {
				return nil, err
			}
			var b strings.Builder
			for _, i := range infos {
				b.WriteString(i.Name + "\n")
			}
			return []byte(b.String()), nil
		}),
		sdk.Filter("http", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			f := strings.SplitN(arg(in), " ", 3)
			if len(f) < 2 {
				return nil, sdk.ErrBadArgs
			}
			var body []byte
			if len(f) == 3 {
				body = []byte(f[2])
			}
			status, resp, err := sdk.HTTP(f[0], f[1], body)
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "%d %s", status, resp), nil
		}),
		sdk.Filter("fs", 0o666, func(ctx context.Context, in []byte) ([]byte, error) {
			return fsop(strings.Fields(arg(in)))
		}),
		sdk.Gen("sleep", 0o444, func(ctx context.Context) ([]byte, error) {
			time.Sleep(30 * time.Second)
			return []byte("awake\n"), nil
		}),
		sdk.Gen("bomb", 0o444, func(ctx context.Context) ([]byte, error) {
			for {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				hoard = append(hoard, b)
			}
		}),
		sdk.Ctl("log", 0o222, nil, func(ctx context.Context, data []byte) error {
			sdk.Logf("%s", arg(data))
			return nil
		}),
	))
}

// fsop runs one file operation of the os package, or with "raw" first
// one straight through WASI on /data's descriptor, passing paths as
// they are, ".." included:
//
//	symlink OLD NEW, link OLD NEW, rename OLD NEW, read PATH,
//	write PATH DATA, mkdir PATH, remove PATH, readlink PATH, ls PATH
//	raw open PATH, raw symlink OLD NEW, raw link OLD NEW, raw rename OLD NEW
func fsop(f []string) ([]byte, error) {
	ok := []byte("ok")
	if len(f) < 2 {
		return nil, sdk.ErrBadArgs
	}
	two := func() error {
		if len(f) != 3 {
			return sdk.ErrBadArgs
		}
		return nil
	}
	switch f[0] {
	case "raw":
		return rawop(f[1:])
	case "symlink", "link", "rename":
		if err := two(); err != nil {
			return nil, err
		}
		op := map[string]func(string, string) error{"symlink": os.Symlink, "link": os.Link, "rename": os.Rename}[f[0]]
		return ok, op(f[1], f[2])
	case "read":
		return os.ReadFile(f[1])
	case "write":
		return ok, os.WriteFile(f[1], []byte(strings.Join(f[2:], " ")), 0o644)
	case "mkdir":
		return ok, os.Mkdir(f[1], 0o755)
	case "remove":
		return ok, os.Remove(f[1])
	case "readlink":
		s, err := os.Readlink(f[1])
		return []byte(s), err
	case "ls":
		des, err := os.ReadDir(f[1])
		var b strings.Builder
		for _, de := range des {
			b.WriteString(de.Name() + "\n")
		}
		return []byte(b.String()), err
	}
	return nil, sdk.ErrBadArgs
}

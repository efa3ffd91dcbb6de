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
//
// The tests package it under several manifests (loop, trap, nsprobe),
// so that one binary is compiled once.
package main

import (
	"context"
	"fmt"
	"strings"

	"cheshire/providers/modules/sdk"
)

func main() {}

var sink int

type thing struct{ n int }

var nothing *thing

func init() {
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
		sdk.Ctl("log", 0o222, nil, func(ctx context.Context, data []byte) error {
			sdk.Logf("%s", arg(data))
			return nil
		}),
	))
}

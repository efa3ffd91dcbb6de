package synth_test

import (
	"context"
	"fmt"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
	"cheshire/synth/synthtest"
)

// fullTree has a file of every kind, a dynamic directory with a dynamic
// directory inside, clone sessions and a directory the tester may not
// read.
func fullTree(t *testing.T) *synth.Server {
	t.Helper()
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Static("README", 0444, []byte("a sample tree\n"))))
	must(t, root.Add(synth.String("status", 0444, func(context.Context) string { return "ok\n" })))
	data := []byte("zone a.org\n")
	must(t, root.Add(synth.ReadWrite("zone", 0664,
		func(context.Context) ([]byte, error) { return data, nil },
		func(_ context.Context, b []byte) error { return nil })))
	must(t, root.Add(synth.Ctl("ctl", 0660, []synth.Cmd{{Name: "reload"}}, func(context.Context) string { return "loaded\n" })))
	lg := synth.NewLog(0)
	t.Cleanup(lg.Close)
	must(t, root.Add(lg.File("log", styx.DMAPPEND|0444)))
	must(t, root.Add(synth.Static("lock", styx.DMEXCL|0444, []byte("l"))))

	net := synth.NewDir("net", 0555)
	must(t, net.Add(synth.Clone("clone", 0666, net, func(ctx context.Context, n int) (*synth.Dir, error) {
		d := synth.NewDir("", 0555)
		if err := d.Add(synth.Ctl("ctl", 0660, nil, nil)); err != nil {
			return nil, err
		}
		return d, d.Add(synth.String("local", 0444, func(context.Context) string { return fmt.Sprintf("conn %d\n", n) }))
	})))
	must(t, root.Add(net))

	users := synth.NewDir("users", 0555)
	users.SetGen(func(ctx context.Context) ([]synth.Node, error) {
		var ns []synth.Node
		for _, u := range []string{"alice", "bob", "carol"} {
			d := synth.NewDir(u, 0555)
			d.SetGen(func(context.Context) ([]synth.Node, error) {
				return []synth.Node{
					synth.String("name", 0444, func(context.Context) string { return u + "\n" }),
					synth.String("key", 0400, func(context.Context) string { return "key of " + u + "\n" }),
				}, nil
			})
			if err := d.Add(synth.Static("static", 0444, []byte(u))); err != nil {
				return nil, err
			}
			ns = append(ns, d)
		}
		return ns, nil
	})
	must(t, root.Add(users))

	priv := synth.NewDir("private", 0700)
	priv.SetOwner("alice", "alice")
	must(t, priv.Add(synth.Static("x", 0444, nil)))
	must(t, root.Add(priv))
	return synth.NewServer(root, synth.WithClock(pinned))
}

func TestConformance(t *testing.T) {
	s := fullTree(t)
	// Make two clone sessions for the tester to find.
	e := newEnv(t, s)
	fid := e.attach("glenda")
	for range 2 {
		f, err := e.open(fid, "net/clone", styx.OREAD)
		must(t, err)
		f.Clunk(e.ctx)
	}
	for _, user := range []string{"glenda", "alice", "none"} {
		t.Run(user, func(t *testing.T) { synthtest.TestServer(t, s, user) })
	}
}

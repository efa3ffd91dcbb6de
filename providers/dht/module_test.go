package dht

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	dhtlib "cheshire/dht"
	"cheshire/module"
	"cheshire/nodekey"
)

func config(t *testing.T, text string) module.Config {
	t.Helper()
	c, err := module.ParseConfig(text)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfig(t *testing.T) {
	m := NewModule(newKey(t), "glenda", "test", dhtlib.Options{})
	if mf := m.Manifest(); mf.Name != "dht" || mf.Mount != "/dht" {
		t.Errorf("manifest: %+v", mf)
	}
	good := []string{
		"",
		"listen udp!127.0.0.1!6881\n",
		"listen 127.0.0.1:0\nbootstrap 127.0.0.1:6881 [::1]:6881\nbootstrap example.org:6881\npublic-routers off\n",
		"public-routers on\n",
	}
	for _, c := range good {
		if err := m.CheckConfig(config(t, c)); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	bad := map[string]string{
		"listen tcp!127.0.0.1!6881\n":           "udp",
		"listen a b\n":                          "want listen",
		"listen 127.0.0.1:1\nlisten [::1]:1\n":  "more than one",
		"bootstrap\n":                           "want bootstrap",
		"bootstrap 127.0.0.1\n":                 "missing port",
		"bootstrap 127.0.0.1:x\n":               "bad port",
		"public-routers yes\n":                  "on or off",
		"frobnicate 1\n":                        "unknown setting",
		"listen 127.0.0.1:0\nfrobnicate 1\n":    "config line 2",
		"listen 127.0.0.1:99999\n":              "bad port",
		"bootstrap 127.0.0.1:1 127.0.0.1:-1\n":  "bad port",
		"public-routers\n":                      "on or off",
		"listen udp!127.0.0.1!6881!1\n":         "too many fields",
		"bootstrap router.bittorrent.com\n":     "missing port",
		"listen\n":                              "want listen",
		"public-routers on off\n":               "on or off",
		"bootstrap 127.0.0.1:1\nlisten x y z\n": "config line 2",
	}
	for c, want := range bad {
		err := m.CheckConfig(config(t, c))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", c, err, want)
		}
	}
	// Off by default: no public router unless asked for.
	o, err := parseConfig(config(t, "bootstrap 127.0.0.1:1\n"), dhtlib.Options{})
	if err != nil || o.PublicRouters || len(o.Bootstrap) != 1 {
		t.Errorf("default: %+v, %v", o, err)
	}
	if o, err := parseConfig(config(t, "public-routers on\n"), dhtlib.Options{}); err != nil || !o.PublicRouters {
		t.Errorf("public-routers on: %+v, %v", o, err)
	}

	// The module's defaults apply where no line replaces them.
	defaults := dhtlib.Options{Listen: "udp!127.0.0.1!7000", Bootstrap: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, PublicRouters: true}
	dm := NewModule(newKey(t), "glenda", "test", defaults)
	defaults.Bootstrap[0] = "changed:1" // NewModule keeps its own copy
	o, err = parseConfig(config(t, ""), dm.defaults)
	if err != nil || o.Listen != "udp!127.0.0.1!7000" || !slices.Equal(o.Bootstrap, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) || !o.PublicRouters {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = parseConfig(config(t, "listen 127.0.0.1:0\nbootstrap 127.0.0.1:1\nbootstrap 127.0.0.1:2\npublic-routers off\n"), dm.defaults)
	if err != nil || o.Listen != "127.0.0.1:0" || !slices.Equal(o.Bootstrap, []string{"127.0.0.1:1", "127.0.0.1:2"}) || o.PublicRouters {
		t.Errorf("config over defaults: %+v, %v", o, err)
	}
	if !slices.Equal(dm.defaults.Bootstrap, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) {
		t.Errorf("defaults changed: %v", dm.defaults.Bootstrap)
	}
	for _, bad := range []dhtlib.Options{{Listen: "tcp!127.0.0.1!1"}, {Bootstrap: []string{"nohost"}}} {
		bm := NewModule(newKey(t), "glenda", "test", bad)
		if err := bm.CheckConfig(config(t, "")); err == nil || !strings.Contains(err.Error(), "the default") {
			t.Errorf("bad defaults %+v: %v", bad, err)
		}
		if err := bm.CheckConfig(config(t, "listen 127.0.0.1:0\nbootstrap 127.0.0.1:1\n")); err != nil {
			t.Errorf("bad defaults %+v replaced: %v", bad, err)
		}
	}
}

func TestModule(t *testing.T) {
	nodes := newSwarm(t, 3)
	key := newKey(t)
	m := NewModule(key, "glenda", "test", dhtlib.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// The same port for both instances: a new one would leave the old
	// address of the node's id in the tables, to time out on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	cfg := config(t, fmt.Sprintf("listen udp!127.0.0.1!%d\nbootstrap %v\n", port, nodes[0].Addr()))
	for round := range 2 {
		inst, err := m.Start(ctx, module.Env{Name: "dht", Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		in := inst.(*instance)
		if m.Node() != in.n {
			t.Error("Node is not the running instance's")
		}
		if !in.n.Addr().Addr().IsLoopback() {
			t.Errorf("listening on %v", in.n.Addr())
		}
		if err := in.n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if _, err := in.n.Publish(ctx, []byte("from the module")); err != nil {
				t.Fatal(err)
			}
		}
		actx, root := client(t, inst)
		status := readFile(t, actx, root, "status")
		if !strings.Contains(status, "key "+nodekey.Encode(key.Public().(ed25519.PublicKey))) {
			t.Errorf("status:\n%s", status)
		}
		// The module's memory outlives its instances.
		rec := readFile(t, actx, root, "records/"+nodekey.Encode(key.Public().(ed25519.PublicKey)))
		if !strings.Contains(rec, `value "from the module"`) {
			t.Errorf("round %d: own record:\n%s", round, rec)
		}
		if round == 1 {
			r, err := nodes[1].Lookup(ctx, key.Public().(ed25519.PublicKey))
			if err != nil || string(r.Value) != "from the module" {
				t.Errorf("lookup after restart: %+v, %v", r, err)
			}
		}
		if err := inst.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if m.Node() != nil {
			t.Error("Node after Stop")
		}
		m.Readvertise() // stopped: nothing to tell, and no block
	}
}

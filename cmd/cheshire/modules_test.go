package main

import (
	"strings"
	"testing"

	"cheshire/module"
	"cheshire/plan9"
)

// TestDefaultNamespace: the default namespace mounts each built-in where
// its manifest says (#tmp with -c), and /modules; one without a mount
// point (#host) is left out; the text reads back as it was made.
func TestDefaultNamespace(t *testing.T) {
	t.Parallel()
	var mods []module.Module
	for _, mf := range []module.Manifest{
		{Name: "node", Mount: "/node"}, {Name: "host"}, {Name: "tmp", Mount: "/tmp"}, {Name: "dns", Mount: "/dns"},
	} {
		mods = append(mods, module.Native(mf, nil))
	}
	cmds := defaultNamespace(mods)
	var lines []string
	for _, c := range cmds {
		lines = append(lines, c.String())
	}
	text := strings.Join(lines, "\n") + "\n"
	want := "mount '#modules' /modules\nmount '#node' /node\nmount -c '#tmp' /tmp\nmount '#dns' /dns\n"
	if text != want {
		t.Errorf("default namespace:\n%s\nwant:\n%s", text, want)
	}
	back, err := plan9.ParseNS(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for i := range back {
		if back[i].String() != cmds[i].String() || back[i].Line != cmds[i].Line {
			t.Errorf("line %d reads back as %+v, made as %+v", i+1, back[i], cmds[i])
		}
	}
}

package tests

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// A layer is a set of packages (by import path prefix, longest first
// wins) and the project packages they may import.
type layer struct {
	pkgs  []string // import paths; a trailing "/" takes the subtree
	may   []string // likewise
	tests bool     // the packages' own tests are held to may as well
}

const mod = "cheshire/"

// leaves are the packages several layers need, which import nothing of
// the project above them.
var leaves = []string{"plan9", "atomicfile", "connlimit", "nodekey", "module", "httpsd", "raftgroup"}

// layers is the layering ARCHITECTURE.md draws: plan9 ← styx ← synth ←
// providers, with leaf packages below the providers; ns and the module
// manager above the providers' toolkit but never importing a provider;
// cmd on top, wiring.
var layers = []layer{
	{pkgs: []string{"plan9", "atomicfile", "connlimit"}},
	{pkgs: []string{"styx"}, may: []string{"plan9", "connlimit"}, tests: true},
	{pkgs: []string{"synth", "synth/"}, may: []string{"plan9", "styx", "synth/"}},
	{pkgs: []string{"nodekey"}, may: []string{"plan9", "atomicfile"}},
	{pkgs: []string{"module"}, may: []string{"plan9", "styx"}},
	{pkgs: []string{"httpsd"}, may: []string{"connlimit"}},
	{pkgs: []string{"raftgroup"}, may: []string{"atomicfile", "connlimit", "nodekey", "internal/testutil"}, tests: true},
	{pkgs: []string{"dht"}, may: []string{"plan9", "atomicfile", "nodekey"}},
	{pkgs: []string{"providers/"}, may: append([]string{"styx", "synth", "dht"}, leaves...)},
	{pkgs: []string{"internal/testutil"}, may: []string{"plan9", "styx"}},
	{pkgs: []string{"fusemount"}, may: []string{"plan9", "styx"}},
	{pkgs: []string{"webui"}, may: append([]string{"styx"}, leaves...)},
	{pkgs: []string{"importers/"}, may: append([]string{"styx", "dht"}, leaves...)},
	{pkgs: []string{"ns"}, may: append([]string{"styx", "synth"}, leaves...)},
	{pkgs: []string{"modules/sdk", "modules/examples/"}, may: []string{"modules/abi", "modules/sdk"}},
	{pkgs: []string{"modules", "modules/"}, may: append([]string{"styx", "synth", "ns", "modules/"}, leaves...)},
	{pkgs: []string{"cmd/", "tests"}, may: []string{""}}, // anything
}

// layerOf returns the layer of import path p (without the module
// prefix): the one whose longest pattern matches.
func layerOf(p string) (layer, bool) {
	best, n := layer{}, -1
	for _, l := range layers {
		for _, q := range l.pkgs {
			if matches(p, q) && len(q) > n {
				best, n = l, len(q)
			}
		}
	}
	return best, n >= 0
}

func matches(p, pattern string) bool {
	if pattern == "" {
		return true
	}
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(p, pattern)
	}
	return p == pattern
}

// TestLayering runs go list over the module and fails on every import
// that crosses the layering: a provider importing another provider, ns
// or the module manager; a leaf importing what is above it; styx's tests
// reaching for a provider.
func TestLayering(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,TestImports,XTestImports", "../...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		name := strings.TrimPrefix(p.ImportPath, mod)
		l, ok := layerOf(name)
		if !ok {
			t.Errorf("%s is in no layer: add it to layers here and to ARCHITECTURE.md", name)
			continue
		}
		check := func(imports []string, what string) {
			for _, imp := range imports {
				if !strings.HasPrefix(imp, mod) {
					continue
				}
				dep := strings.TrimPrefix(imp, mod)
				if dep == name || strings.HasPrefix(dep, name+"/") {
					continue // its own subpackages
				}
				allowed := false
				for _, q := range l.may {
					if matches(dep, q) {
						allowed = true
						break
					}
				}
				if !allowed {
					t.Errorf("%s%s imports %s, which its layer may not", name, what, dep)
				}
			}
		}
		check(p.Imports, "")
		if l.tests {
			check(p.TestImports, " (tests)")
			check(p.XTestImports, " (tests)")
		}
	}
	if seen < 20 {
		t.Fatalf("go list listed %d packages: the test is broken", seen)
	}
}

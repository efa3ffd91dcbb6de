package modules_test

import (
	"strings"
	"testing"

	"cheshire/module"
)

func TestParsePerm(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"read", "/tmp"}, true},
		{[]string{"write", "/tmp/x/"}, true},
		{[]string{"http", "127.0.0.1:*"}, true},
		{[]string{"http", "*"}, true},
		{[]string{"read", "tmp"}, false},
		{[]string{"read", "/tmp/../etc"}, false},
		{[]string{"exec", "/bin"}, false},
		{[]string{"http", "example"}, false},
		{[]string{"read"}, false},
	} {
		_, err := module.ParsePerm(c.args)
		if (err == nil) != c.ok {
			t.Errorf("ParsePerm(%q) = %v, want ok %v", c.args, err, c.ok)
		}
	}
	p := func(k, a string) module.Perm { return module.Perm{Kind: k, Arg: a} }
	for _, c := range []struct {
		have, want module.Perm
		ok         bool
	}{
		{p("read", "/tmp"), p("read", "/tmp/a"), true},
		{p("read", "/tmp"), p("read", "/tmpfoo"), false},
		{p("read", "/tmp"), p("write", "/tmp/a"), false},
		{p("write", "/tmp"), p("read", "/tmp/a"), true},
		{p("read", "/"), p("read", "/x"), true},
		{p("http", "127.0.0.1:*"), p("http", "127.0.0.1:80"), true},
		{p("http", "127.0.0.1:*"), p("http", "127.0.0.2:80"), false},
	} {
		if got := c.have.Covers(c.want); got != c.ok {
			t.Errorf("%v covers %v = %v, want %v", c.have, c.want, got, c.ok)
		}
	}
}

// FuzzParseConfig: any text parses or is refused with a line number;
// never a panic, and entries point at real lines.
func FuzzParseConfig(f *testing.F) {
	f.Add("allow read /tmp\nmemory 64M\n# c\nlazy on\n")
	f.Add("mount '/a b'\nhotreload on 2s\n")
	f.Add("x 'unterminated\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := module.ParseConfig(text)
		if err != nil {
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("error without a line: %v", err)
			}
			return
		}
		lines := strings.Split(text, "\n")
		for _, e := range cfg.Entries {
			if e.Line < 1 || e.Line > len(lines) || e.Key == "" {
				t.Errorf("entry %+v out of %d lines", e, len(lines))
			}
		}
		for _, e := range cfg.Entries {
			module.ParsePerm(e.Args)
		}
	})
}

package plan9

import (
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseNSLine(t *testing.T) {
	tests := []struct {
		in   string
		want NSCmd
		ok   bool
		err  string
	}{
		{"", NSCmd{}, false, ""},
		{"   \t\r\n", NSCmd{}, false, ""},
		{"# comment", NSCmd{}, false, ""},
		{"  #bind /a /b", NSCmd{}, false, ""},
		{"bind /a /b", NSCmd{Op: "bind", Args: []string{"/a", "/b"}}, true, ""},
		{"bind -b /a /b\n", NSCmd{Op: "bind", Flags: "b", Args: []string{"/a", "/b"}}, true, ""},
		{"bind -bc '#s' /srv", NSCmd{Op: "bind", Flags: "bc", Args: []string{"#s", "/srv"}}, true, ""},
		{"bind -aC /a /b", NSCmd{Op: "bind", Flags: "aC", Args: []string{"/a", "/b"}}, true, ""},
		{"mount -c 'unix!/tmp/x' /n/x spec", NSCmd{Op: "mount", Flags: "c", Args: []string{"unix!/tmp/x", "/n/x", "spec"}}, true, ""},
		{"mount /srv/boot /root", NSCmd{Op: "mount", Args: []string{"/srv/boot", "/root"}}, true, ""},
		{"mount /srv/x /n/x ''", NSCmd{Op: "mount", Args: []string{"/srv/x", "/n/x", ""}}, true, ""},
		{"unmount /n/x", NSCmd{Op: "unmount", Args: []string{"/n/x"}}, true, ""},
		{"unmount /a /n/x", NSCmd{Op: "unmount", Args: []string{"/a", "/n/x"}}, true, ""},
		{"unmount -a /b", NSCmd{Op: "unmount", Args: []string{"-a", "/b"}}, true, ""},
		{"cd /usr/glenda", NSCmd{Op: "cd", Args: []string{"/usr/glenda"}}, true, ""},
		{". /lib/namespace.local", NSCmd{Op: ".", Args: []string{"/lib/namespace.local"}}, true, ""},
		{"import -a host /proc", NSCmd{Op: "import", Flags: "a", Args: []string{"host", "/proc"}}, true, ""},
		{"import host /net /n/net", NSCmd{Op: "import", Args: []string{"host", "/net", "/n/net"}}, true, ""},
		{"export /a /b", NSCmd{Op: "export", Args: []string{"/a", "/b"}}, true, ""},

		{"bind -x /a /b", NSCmd{}, false, "bind: bad flag 'x'"},
		{"bind -ab /a /b", NSCmd{}, false, "bind: -a and -b are mutually exclusive"},
		{"bind - /a /b", NSCmd{}, false, "bind: missing flag letter after '-'"},
		{"bind /a", NSCmd{}, false, "bind: usage: bind [-abcC] new old"},
		{"bind -b /a /b /c", NSCmd{}, false, "bind: usage: bind [-abcC] new old"},
		{"mount /a", NSCmd{}, false, "mount: usage: mount [-abcC] server old [spec]"},
		{"mount a b c d", NSCmd{}, false, "mount: usage:"},
		{"unmount", NSCmd{}, false, "unmount: usage: unmount [new] old"},
		{"unmount a b c", NSCmd{}, false, "unmount: usage:"},
		{"cd", NSCmd{}, false, "cd: usage: cd dir"},
		{"cd a b", NSCmd{}, false, "cd: usage:"},
		{".", NSCmd{}, false, ".: usage: . file"},
		{"import host", NSCmd{}, false, "import: usage:"},
		{"export x", NSCmd{}, false, "export: usage:"},
		{"frob /a", NSCmd{}, false, `unknown command "frob"`},
		{"bind '/a /b", NSCmd{}, false, "unterminated quote"},
	}
	for _, tt := range tests {
		got, ok, err := ParseNSLine(tt.in)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("ParseNSLine(%q) = %v, %v, %v; want error %q", tt.in, got, ok, err, tt.err)
			}
			continue
		}
		if err != nil || ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseNSLine(%q) = %#v, %v, %v; want %#v, %v", tt.in, got, ok, err, tt.want, tt.ok)
		}
	}
}

const sampleNS = `# root
mount -aC #s/boot /root $rootspec
bind -a $rootdir /
bind -c $rootdir/mnt /mnt

# kernel devices
bind #c /dev
bind -a '#¤' /dev
mount -c 'unix!/tmp/x' /n/x spec
unmount /n/x
	. /lib/namespace.local
cd /usr/glenda
`

func TestParseNS(t *testing.T) {
	cmds, err := ParseNS(strings.NewReader(sampleNS))
	if err != nil {
		t.Fatal(err)
	}
	want := []NSCmd{
		{"mount", "aC", []string{"#s/boot", "/root", "$rootspec"}, 2},
		{"bind", "a", []string{"$rootdir", "/"}, 3},
		{"bind", "c", []string{"$rootdir/mnt", "/mnt"}, 4},
		{"bind", "", []string{"#c", "/dev"}, 7},
		{"bind", "a", []string{"#¤", "/dev"}, 8},
		{"mount", "c", []string{"unix!/tmp/x", "/n/x", "spec"}, 9},
		{"unmount", "", []string{"/n/x"}, 10},
		{".", "", []string{"/lib/namespace.local"}, 11},
		{"cd", "", []string{"/usr/glenda"}, 12},
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Errorf("ParseNS:\n got %q\nwant %q", cmds, want)
	}
}

func TestParseNSErrors(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{"bind /a /b\n\nbind -x /a /b\n", "line 3: bind: bad flag 'x'"},
		{"frob", `line 1: unknown command "frob"`},
		{"# ok\nmount 'x /y\n", "line 2: unterminated quote"},
		{"cd /a\ncd\n", "line 2: cd: usage: cd dir"},
	}
	for _, tt := range tests {
		_, err := ParseNS(strings.NewReader(tt.in))
		if err == nil || err.Error() != tt.err {
			t.Errorf("ParseNS(%q): %v; want %q", tt.in, err, tt.err)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestParseNSReadError(t *testing.T) {
	_, err := ParseNS(io.MultiReader(strings.NewReader("cd /\n"), errReader{}))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "line 2: ") {
		t.Errorf("ParseNS with failing reader: %v", err)
	}
}

func TestParseNSNoFinalNewline(t *testing.T) {
	cmds, err := ParseNS(strings.NewReader("cd /a\r\ncd /b"))
	if err != nil || len(cmds) != 2 || cmds[1].Args[0] != "/b" || cmds[1].Line != 2 {
		t.Errorf("ParseNS = %q, %v", cmds, err)
	}
}

func TestNSCmdString(t *testing.T) {
	tests := []struct {
		in   NSCmd
		want string
	}{
		{NSCmd{Op: "bind", Flags: "b", Args: []string{"/a", "/b"}}, "bind -b /a /b"},
		{NSCmd{Op: "mount", Flags: "c", Args: []string{"unix!/tmp/x", "/n/x", "spec"}}, "mount -c unix!/tmp/x /n/x spec"},
		{NSCmd{Op: "mount", Args: []string{"/srv/x", "/n/x", ""}}, "mount /srv/x /n/x ''"},
		{NSCmd{Op: "bind", Args: []string{"#s", "/n/my srv"}}, "bind '#s' '/n/my srv'"},
		{NSCmd{Op: ".", Args: []string{"/lib/ns"}}, ". /lib/ns"},
		{NSCmd{Op: "cd", Args: []string{"it's"}, Line: 7}, "cd 'it''s'"},
	}
	for _, tt := range tests {
		got := tt.in.String()
		if got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.in, got, tt.want)
		}
		back, ok, err := ParseNSLine(got)
		tt.in.Line = 0
		if err != nil || !ok || !nsEqual(back, tt.in) {
			t.Errorf("ParseNSLine(%q) = %#v, %v, %v; want %#v", got, back, ok, err, tt.in)
		}
	}
}

// nsEqual compares commands, ignoring Line and treating nil and empty
// Args alike.
func nsEqual(a, b NSCmd) bool {
	return a.Op == b.Op && a.Flags == b.Flags && slices.Equal(a.Args, b.Args)
}

func FuzzParseNS(f *testing.F) {
	for _, s := range []string{
		"",
		sampleNS,
		"bind -bc /a /b\n",
		"mount -c 'unix!/tmp/x' /n/x spec",
		"unmount -a /b",
		"bind -x /a /b",
		"bind -ab /a /b",
		"# comment\n\n. /lib/namespace",
		"cd 'it''s'\r\n",
		"import -a host /a /b /c",
		"export a 'b\tc'",
		"bind '",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cmds, err := ParseNS(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, c := range cmds {
			line := c.String()
			back, ok, err := ParseNSLine(line)
			if err != nil || !ok || !nsEqual(back, c) {
				t.Fatalf("ParseNSLine(%q) = %#v, %v, %v; want %#v", line, back, ok, err, c)
			}
		}
	})
}

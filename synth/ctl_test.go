package synth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"cheshire/plan9"
	"cheshire/styx"
	"cheshire/synth"
)

// ctlTable is a command table that records what it runs.
func ctlTable(mu *sync.Mutex, ran *[]string) []synth.Cmd {
	record := func(verb string) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error {
			mu.Lock()
			defer mu.Unlock()
			*ran = append(*ran, strings.Join([]string{verb, plan9.Join(args)}, " "))
			return nil
		}
	}
	return []synth.Cmd{
		{Name: "bind", Min: 2, Max: 2, Usage: "bind [-abc] new old", Run: record("bind")},
		{Name: "zone", Min: 1, Max: 1, Usage: "zone name", Run: record("zone")},
		{Name: "zone add", Min: 1, Max: 1, Usage: "zone add name", Run: func(ctx context.Context, args []string) error {
			if args[0] == "dup.org" {
				return errors.New("zone already exists")
			}
			return record("zone add")(ctx, args)
		}},
		{Name: "echo", Max: -1, Usage: "echo words...", Run: record("echo")},
		{Name: "nop"},
		{Name: "revoke", Min: 1, Max: 2, Usage: "revoke SERIAL [reason]", Run: record("revoke")},
		{Name: "backup", Min: 1, Max: 1, Usage: "backup PASSPHRASE", Secret: true, Run: record("backup")},
	}
}

func TestParseCtl(t *testing.T) {
	cmds := ctlTable(new(sync.Mutex), new([]string))
	tests := []struct {
		line string
		verb string
		args []string
		err  string
	}{
		{"bind a b", "bind", []string{"a", "b"}, ""},
		{"  bind\ta b \n", "bind", []string{"a", "b"}, ""},
		{"bind 'new dir' 'it''s'", "bind", []string{"new dir", "it's"}, ""},
		{"bind '' b", "bind", []string{"", "b"}, ""},
		{"zone a.org", "zone", []string{"a.org"}, ""},
		{"zone add a.org", "zone add", []string{"a.org"}, ""},
		{"zone 'add' a.org", "zone add", []string{"a.org"}, ""},
		{"echo", "echo", []string{}, ""},
		{"echo a b c d", "echo", []string{"a", "b", "c", "d"}, ""},
		{"nop", "nop", []string{}, ""},
		{"", "", nil, "empty control message"},
		{" \t ", "", nil, "empty control message"},
		{"foo bar", "", nil, `unknown control message "foo bar"`},
		{"Bind a b", "", nil, `unknown control message "Bind a b"`},
		{"bind x", "", nil, `bad # args to command "bind x": usage: bind [-abc] new old`},
		{"bind a b c", "", nil, `bad # args to command "bind a b c": usage: bind [-abc] new old`},
		{"zone add", "", nil, `bad # args to command "zone add": usage: zone add name`},
		{"zone add a b", "", nil, `bad # args to command "zone add a b": usage: zone add name`},
		{"nop x", "", nil, `bad # args to command "nop x"`},
		{"bind 'a b", "", nil, `unterminated quote "bind 'a b"`},
		{"zone a\v", "zone", []string{"a\v"}, ""},
		{"\v", "", nil, "unknown control message \"\v\""},
		{"revoke 12", "revoke", []string{"12"}, ""},
		{"revoke 12 keyCompromise", "revoke", []string{"12", "keyCompromise"}, ""},
		{"revoke", "", nil, `bad # args to command "revoke": usage: revoke SERIAL [reason]`},
		{"revoke 1 2 3", "", nil, `bad # args to command "revoke 1 2 3": usage: revoke SERIAL [reason]`},
		{"backup 'sesame seed'", "backup", []string{"sesame seed"}, ""},
		{"backup open sesame", "", nil, `bad # args to command "backup": usage: backup PASSPHRASE`},
		{"backup", "", nil, `bad # args to command "backup": usage: backup PASSPHRASE`},
		{"backup 'sesame", "", nil, `unterminated quote "backup"`},
	}
	for _, tt := range tests {
		cmd, args, err := synth.ParseCtl(tt.line, cmds)
		if errText(err) != tt.err {
			t.Errorf("ParseCtl(%q): error %v, want %q", tt.line, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if cmd.Name != tt.verb || !slices.Equal(args, tt.args) {
			t.Errorf("ParseCtl(%q) = %q %q, want %q %q", tt.line, cmd.Name, args, tt.verb, tt.args)
		}
	}
	for _, c := range []struct {
		line string
		is   error
	}{{"", plan9.ErrEmptyCtl}, {"foo", plan9.ErrBadCtl}, {"bind", plan9.ErrBadArgs}} {
		if _, _, err := synth.ParseCtl(c.line, cmds); !errors.Is(err, c.is) {
			t.Errorf("ParseCtl(%q): %v is not %v", c.line, err, c.is)
		}
	}
}

func TestCtlErrorLength(t *testing.T) {
	cmds := []synth.Cmd{{Name: "set", Min: 2, Max: 2, Usage: "set key value (where key is one of name, addr, port, ttl, weight or priority)"}}
	long := "set " + strings.Repeat("é", 100)
	for _, line := range []string{long, strings.Repeat("x", 300), "'" + strings.Repeat("y", 300)} {
		_, _, err := synth.ParseCtl(line, cmds)
		if err == nil {
			t.Fatalf("ParseCtl(%.20q...) succeeded", line)
		}
		s := err.Error()
		if len(s) >= plan9.ErrMax {
			t.Errorf("error of %d bytes: %q", len(s), s)
		}
		if !strings.Contains(s, `..."`) {
			t.Errorf("quoted command not marked as cut: %q", s)
		}
	}
	_, _, err := synth.ParseCtl(long, cmds)
	if s := err.Error(); !strings.HasSuffix(s, cmds[0].Usage) || !strings.HasPrefix(s, `bad # args to command "set éé`) {
		t.Errorf("usage lost: %q", s)
	}
}

func TestCtlFile(t *testing.T) {
	var mu sync.Mutex
	var ran []string
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Ctl("ctl", 0660, ctlTable(&mu, &ran), func(context.Context) string { return "zones 2\n" })))
	must(t, root.Add(synth.Ctl("quiet", 0220, ctlTable(&mu, &ran), nil)))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("none")

	tests := []struct {
		write string
		err   string
		ran   []string
	}{
		{"bind a b\n", "", []string{"bind a b"}},
		{"bind a b", "", []string{"bind a b"}},
		{"bind 'a dir' b\n", "", []string{"bind 'a dir' b"}},
		{"foo bar\n", `unknown control message "foo bar"`, nil},
		{"bind x\n", `bad # args to command "bind x": usage: bind [-abc] new old`, nil},
		{"\n\n", "empty control message", nil},
		{"bind a b\n\nzone add x.org\necho hi there\n", "", []string{"bind a b", "zone add x.org", "echo hi there"}},
		// Every line is checked before any runs.
		{"bind a b\nbogus\nzone x.org\n", `unknown control message "bogus"`, nil},
		{"bind a b\nzone add\n", `bad # args to command "zone add": usage: zone add name`, nil},
		// Lines run in order; the first error stops them.
		{"bind a b\nzone add dup.org\nzone y.org\n", "line 2: zone add: zone already exists", []string{"bind a b"}},
		{"zone add dup.org\n", "zone add: zone already exists", nil},
	}
	for _, tt := range tests {
		mu.Lock()
		ran = nil
		mu.Unlock()
		f, err := e.open(fid, "ctl", styx.OWRITE)
		must(t, err)
		n, err := f.WriteAt(e.ctx, []byte(tt.write), 0)
		if errText(err) != tt.err {
			t.Errorf("write %q: %v, want %q", tt.write, err, tt.err)
		}
		if err == nil && n != len(tt.write) {
			t.Errorf("write %q: count %d", tt.write, n)
		}
		must(t, f.Clunk(e.ctx))
		mu.Lock()
		if !slices.Equal(ran, tt.ran) {
			t.Errorf("write %q ran %q, want %q", tt.write, ran, tt.ran)
		}
		mu.Unlock()
	}
	if s, err := e.read(fid, "ctl"); s != "zones 2\n" || err != nil {
		t.Errorf("read ctl: %q, %v", s, err)
	}
	if st, _ := e.stat(fid, "ctl"); st.Length != 8 {
		t.Errorf("ctl length %d", st.Length)
	}
	if err := e.write(fid, "quiet", styx.OWRITE, "nop"); err != nil {
		t.Errorf("write quiet: %v", err)
	}
	if st, _ := e.stat(fid, "quiet"); st.Length != 0 {
		t.Errorf("quiet length %d", st.Length)
	}
}

// TestCtlBatch: a batch sees every line of a write inside one call, and
// what it keeps when a line fails is up to it: here, nothing.
func TestCtlBatch(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ran, kept []string
	batches := 0
	batch := func(ctx context.Context, run func(context.Context) error) error {
		mu.Lock()
		batches++
		ran = nil
		mu.Unlock()
		if err := run(ctx); err != nil {
			return err
		}
		mu.Lock()
		kept = append(kept, ran...)
		mu.Unlock()
		return nil
	}
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.CtlBatch("ctl", 0660, ctlTable(&mu, &ran), nil, batch)))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("none")
	if err := e.write(fid, "ctl", styx.OWRITE, "bind a b\n\nzone add dup.org\n"); errText(err) != "line 3: zone add: zone already exists" {
		t.Fatalf("failing batch: %v", err)
	}
	if err := e.write(fid, "ctl", styx.OWRITE, "bind c d\necho hi\n"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if batches != 2 || !slices.Equal(kept, []string{"bind c d", "echo hi"}) {
		t.Errorf("%d batches kept %q", batches, kept)
	}
}

func FuzzParseCtl(f *testing.F) {
	for _, s := range []string{
		"bind a b", "bind 'a b' c", "zone add x.org", "zone 'add' x", "echo",
		"", " ", "\n", "'", "a'b c'd", "foo bar", "bind x", "nop", "'' ''",
		"echo " + strings.Repeat("long ", 40), "zone\tadd\rx",
	} {
		f.Add(s)
	}
	cmds := ctlTable(new(sync.Mutex), new([]string))
	f.Fuzz(func(t *testing.T, line string) {
		cmd, args, err := synth.ParseCtl(line, cmds)
		if err != nil {
			if cmd != nil || args != nil {
				t.Errorf("ParseCtl(%q): error %v with a command", line, err)
			}
			if n := len(err.Error()); n >= plan9.ErrMax {
				t.Errorf("ParseCtl(%q): error of %d bytes", line, n)
			}
			if !errors.Is(err, plan9.ErrEmptyCtl) && !errors.Is(err, plan9.ErrBadCtl) &&
				!errors.Is(err, plan9.ErrBadArgs) && !strings.HasPrefix(err.Error(), "unterminated quote") {
				t.Errorf("ParseCtl(%q): unexpected error %v", line, err)
			}
			return
		}
		words, terr := plan9.Tokenize(line)
		if terr != nil {
			t.Fatalf("ParseCtl(%q) accepted what Tokenize refuses: %v", line, terr)
		}
		verb := strings.FieldsFunc(cmd.Name, func(r rune) bool { return strings.ContainsRune(" \t\r\n", r) })
		if len(verb)+len(args) != len(words) || !slices.Equal(words[:len(verb)], verb) || !slices.Equal(words[len(verb):], args) {
			t.Errorf("ParseCtl(%q) = %q %q; words %q", line, cmd.Name, args, words)
		}
		if len(args) < cmd.Min || (cmd.Max >= 0 && len(args) > cmd.Max) {
			t.Errorf("ParseCtl(%q): %d arguments for %q, which takes %d to %d", line, len(args), cmd.Name, cmd.Min, cmd.Max)
		}
	})
}

// TestCtlReadAfterWrite: on one ORDWR open, a read at offset 0 after a
// write shows the status as the write left it (plan9port's `9p rdwr`);
// reads without a write between them see the text taken at open.
func TestCtlReadAfterWrite(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	cmds := []synth.Cmd{{Name: "inc", Run: func(context.Context, []string) error { mu.Lock(); n++; mu.Unlock(); return nil }}}
	status := func(context.Context) string { mu.Lock(); defer mu.Unlock(); return fmt.Sprintf("count %d\n", n) }
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Ctl("ctl", 0660, cmds, status)))
	e := newEnv(t, synth.NewServer(root))
	f, err := e.open(e.attach("none"), "ctl", styx.ORDWR)
	must(t, err)
	defer f.Clunk(e.ctx)
	read := func() string {
		b := make([]byte, 64)
		k, err := f.ReadAt(e.ctx, b, 0)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		return string(b[:k])
	}
	if got := read(); got != "count 0\n" {
		t.Errorf("at open: %q", got)
	}
	mu.Lock()
	n = 5 // changed by someone else: this open keeps its version
	mu.Unlock()
	if got := read(); got != "count 0\n" {
		t.Errorf("without a write: %q", got)
	}
	if _, err := f.WriteAt(e.ctx, []byte("inc\n"), 0); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "count 6\n" {
		t.Errorf("after a write: %q", got)
	}
}

package synth_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"cheshire/styx"
	"cheshire/synth"
)

// readAll reads f from offset 0 to its end.
func readAll(e *env, f *styx.Fid) (string, error) {
	var out []byte
	b := make([]byte, 5) // several reads for most answers
	for {
		k, err := f.ReadAt(e.ctx, b, int64(len(out)))
		out = append(out, b[:k]...)
		if err == io.EOF || (err == nil && k == 0) {
			return string(out), nil
		}
		if err != nil {
			return string(out), err
		}
	}
}

// TestQuery: each fid has its own answer, the last write's; a read
// before any write gets the nil request's answer; the function's error
// goes to the writer and leaves what it answered.
func TestQuery(t *testing.T) {
	t.Parallel()
	answer := func(ctx context.Context, req []byte) ([]byte, error) {
		switch {
		case req == nil:
			return []byte("write a word\n"), nil
		case bytes.HasPrefix(req, []byte("bad")):
			return nil, errors.New("bad word")
		case bytes.HasPrefix(req, []byte("half")):
			return []byte("half done\n"), errors.New("then it broke")
		}
		return append(bytes.ToUpper(req), '\n'), nil
	}
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Query("q", 0666, answer)))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("none")
	a, err := e.open(fid, "q", styx.ORDWR)
	must(t, err)
	defer a.Clunk(e.ctx)
	b, err := e.open(fid, "q", styx.ORDWR)
	must(t, err)
	defer b.Clunk(e.ctx)

	read := func(f *styx.Fid, want string) {
		t.Helper()
		if got, err := readAll(e, f); err != nil || got != want {
			t.Errorf("read %q, %v; want %q", got, err, want)
		}
	}
	write := func(f *styx.Fid, req, wantErr string) {
		t.Helper()
		if _, err := f.WriteAt(e.ctx, []byte(req), 0); errText(err) != wantErr {
			t.Errorf("write %q: %v, want %q", req, err, wantErr)
		}
	}
	read(a, "write a word\n")
	write(a, "alpha", "")
	write(b, "beta", "")
	read(a, "ALPHA\n")
	read(b, "BETA\n")
	write(a, "bad", "bad word")
	read(a, "ALPHA\n") // refused outright: the answer stays
	write(a, "half", "then it broke")
	read(a, "half done\n")
	read(b, "BETA\n")
}

// TestQueryGather: the writes of a fid make one request, answered at the
// first read; later writes are refused; the answer's error goes to every
// reader; a read before any write fails and leaves the fid waiting.
func TestQueryGather(t *testing.T) {
	t.Parallel()
	var calls int
	answer := func(ctx context.Context, req []byte) ([]byte, error) {
		if req == nil {
			return nil, errors.New("write a request first")
		}
		calls++
		if strings.HasPrefix(string(req), "no") {
			return nil, errors.New("refused")
		}
		return []byte("signed " + string(req)), nil
	}
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Query("csr", 0666, answer, synth.Gather(16))))
	e := newEnv(t, synth.NewServer(root))
	fid := e.attach("none")
	a, err := e.open(fid, "csr", styx.ORDWR)
	must(t, err)
	defer a.Clunk(e.ctx)
	b, err := e.open(fid, "csr", styx.ORDWR)
	must(t, err)
	defer b.Clunk(e.ctx)

	if _, err := readAll(e, a); errText(err) != "write a request first" {
		t.Errorf("read before a write: %v", err)
	}
	for _, w := range []struct {
		off  int64
		data string
	}{{0, "one "}, {4, "two"}, {0, "ONE"}} {
		if _, err := a.WriteAt(e.ctx, []byte(w.data), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.WriteAt(e.ctx, []byte("no thanks"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(e, a); err != nil || got != "signed ONE two" {
		t.Errorf("a: %q, %v", got, err)
	}
	for range 2 {
		if _, err := readAll(e, b); errText(err) != "refused" {
			t.Errorf("b: %v, want the answer's error", err)
		}
	}
	if _, err := a.WriteAt(e.ctx, []byte("more"), 0); errText(err) != "request already answered; open csr again for another" {
		t.Errorf("write after the answer: %v", err)
	}
	if calls != 2 {
		t.Errorf("answer called %d times for 2 requests", calls)
	}
	c, err := e.open(fid, "csr", styx.OWRITE)
	must(t, err)
	if _, err := c.WriteAt(e.ctx, []byte("0123456789abcdefg"), 0); errText(err) != "request larger than 16 bytes" {
		t.Errorf("write over the limit: %v", err)
	}
	if _, err := c.WriteAt(e.ctx, []byte("unread"), 0); err != nil {
		t.Fatal(err)
	}
	must(t, c.Clunk(e.ctx))
	if calls != 2 {
		t.Errorf("a request clunked unread was answered")
	}
}

// TestCtlAnswer: a command table answering on the fid, line by line.
func TestCtlAnswer(t *testing.T) {
	t.Parallel()
	cmds := []synth.Cmd{
		{Name: "echo", Max: -1, Usage: "echo words...", Answer: func(ctx context.Context, args []string) ([]byte, error) {
			return []byte(strings.Join(args, " ") + "\n"), nil
		}},
		{Name: "fail", Answer: func(ctx context.Context, args []string) ([]byte, error) {
			return nil, errors.New("fail: as asked")
		}},
		{Name: "nop"},
	}
	root := synth.NewDir("/", 0555)
	must(t, root.Add(synth.Query("ctl", 0666, synth.CtlAnswer(cmds, "echo words...\n"))))
	e := newEnv(t, synth.NewServer(root))
	f, err := e.open(e.attach("none"), "ctl", styx.ORDWR)
	must(t, err)
	defer f.Clunk(e.ctx)
	step := func(req, wantErr, wantAnswer string) {
		t.Helper()
		if req != "" {
			if _, err := f.WriteAt(e.ctx, []byte(req), 0); errText(err) != wantErr {
				t.Errorf("write %q: %v, want %q", req, err, wantErr)
			}
		}
		if got, err := readAll(e, f); err != nil || got != wantAnswer {
			t.Errorf("after %q: read %q, %v; want %q", req, got, err, wantAnswer)
		}
	}
	step("", "", "echo words...\n")
	step("echo a b\n\nnop\necho c\n", "", "a b\nc\n")
	step("echo d\nfail\necho e\n", "line 2: fail: as asked", "d\n")
	step("echo f\nnop x\n", `bad # args to command "nop x"`, "d\n")
	step("\n", "empty control message", "d\n")
	step("fail", "fail: as asked", "")
}

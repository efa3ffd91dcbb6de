package synth

import (
	"context"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"cheshire/plan9"
)

// A Cmd is one entry of a ctl file's command table, after lib9p's Cmdtab.
type Cmd struct {
	// Name is the verb: one word, or several ("zone add") that must all
	// begin the line. The longest Name that matches wins.
	Name string
	// Min and Max bound the number of words after the verb; Max -1
	// means no bound. The zero values take no arguments.
	Min, Max int
	// Usage is shown when the count of words is wrong, e.g.
	// "bind [-abc] new old".
	Usage string
	// Secret marks a command whose line carries a secret (a passphrase,
	// a key): an error about the line quotes only the verb, never the
	// words after it, and whoever logs a command should do the same.
	Secret bool
	// Run carries out the command with the words after the verb. Its
	// error is returned to the writer as "verb: error". A nil Run
	// accepts the command and does nothing.
	Run func(ctx context.Context, args []string) error
	// Answer, for a file that answers its commands (CtlAnswer), is Run
	// with an answer: what the writer then reads on the same fid. If it
	// is nil there, Run is called and the answer is empty. Ctl does not
	// call it.
	Answer func(ctx context.Context, args []string) ([]byte, error)
}

// separators are the characters that separate words for plan9.Tokenize.
const separators = " \t\r\n"

func isSeparator(r rune) bool { return strings.ContainsRune(separators, r) }

// minQuoted is the least of a refused command that an error quotes.
const minQuoted = 16

// ctlError is a refused control message: kind, the line quoted, then the
// usage if there is one. It fits in plan9.ErrMax, the line cut to make
// room for the usage.
type ctlError struct {
	kind  error
	line  string
	usage string
}

func (e *ctlError) Error() string {
	head := e.kind.Error() + ` "`
	tail := `"`
	if e.usage != "" {
		tail += ": usage: " + e.usage
	}
	line := e.line
	if room := plan9.ErrMax - 1 - len(head) - len(tail); len(line) > room {
		line = cut(line, max(room, minQuoted)-3) + "..."
	}
	return errstr(head + line + tail)
}

func (e *ctlError) Unwrap() error { return e.kind }

// runError is the error of a command's Run, prefixed with its verb.
// In a write of several lines it names the line (counted from 1, blank
// lines included) first.
type runError struct {
	line int // 0: the write had one line
	verb string
	err  error
}

func (e *runError) Error() string {
	msg := e.err.Error()
	if !strings.HasPrefix(msg, e.verb+": ") { // else the command named itself already
		msg = e.verb + ": " + msg
	}
	if e.line > 0 {
		msg = "line " + strconv.Itoa(e.line) + ": " + msg
	}
	return errstr(msg)
}

func (e *runError) Unwrap() error { return e.err }

// errstr cuts s to fit in a Plan 9 error buffer.
func errstr(s string) string { return plan9.Errstr(plan9.Error(s)) }

// cut returns at most n bytes of s, not splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ParseCtl parses one control message line against cmds: it splits the
// line into words with rc(1) quoting, finds the command whose verb begins
// it and checks the count of words after the verb against its Min and
// Max. It returns the command and the words after the verb. Errors are
// "empty control message" (plan9.ErrEmptyCtl) for a blank line,
// `unknown control message "line"` (wrapping plan9.ErrBadCtl),
// `bad # args to command "line": usage: ...` (wrapping plan9.ErrBadArgs)
// and `unterminated quote "line"`; each fits in plan9.ErrMax bytes. The
// line of a Secret command is quoted as its verb alone.
func ParseCtl(line string, cmds []Cmd) (*Cmd, []string, error) {
	line = strings.Trim(line, separators)
	words, err := plan9.Tokenize(line)
	if err != nil {
		// The quoting is broken, so the verb is read without it: a
		// secret command's words are not shown.
		if c, _ := lookupCmd(strings.FieldsFunc(line, isSeparator), cmds); c != nil && c.Secret {
			line = c.Name
		}
		return nil, nil, &ctlError{kind: err, line: line}
	}
	if len(words) == 0 {
		return nil, nil, plan9.ErrEmptyCtl
	}
	best, n := lookupCmd(words, cmds)
	if best == nil {
		return nil, nil, &ctlError{kind: plan9.ErrBadCtl, line: line}
	}
	if args := len(words) - n; args < best.Min || (best.Max >= 0 && args > best.Max) {
		if best.Secret {
			line = best.Name
		}
		return nil, nil, &ctlError{kind: plan9.ErrBadArgs, line: line, usage: best.Usage}
	}
	return best, words[n:], nil
}

// lookupCmd returns the command of cmds whose verb begins words, the
// longest if several do, and the number of words of its verb.
func lookupCmd(words []string, cmds []Cmd) (*Cmd, int) {
	var best *Cmd
	bestLen := 0
	for i := range cmds {
		verb := strings.FieldsFunc(cmds[i].Name, isSeparator)
		if len(verb) <= bestLen || len(verb) > len(words) {
			continue
		}
		if equalWords(verb, words[:len(verb)]) {
			best, bestLen = &cmds[i], len(verb)
		}
	}
	return best, bestLen
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Ctl returns a control file. Each write holds one or more complete lines
// (the last newline optional; blank lines skipped), each parsed by
// ParseCtl against cmds. All lines are checked before any is run; they
// run in order and the first error stops them. A write with no command
// fails with "empty control message". Reading gives status's text, taken
// at open (nothing if status is nil).
func Ctl(name string, perm uint32, cmds []Cmd, status func(ctx context.Context) string) *File {
	return NewFile(name, perm, &ctlHandler{cmds: cmds, status: status})
}

// A Batch makes the lines of one ctl write a unit. It is called once per
// write, after every line has parsed, with run, which runs the lines in
// order and returns the first error. A Batch sets up what the commands
// change (typically a copy of the state, carried to the commands' Run in
// the context it passes to run), calls run, and keeps the changes only if
// run returns nil: all lines or none, with one save at the end.
type Batch func(ctx context.Context, run func(ctx context.Context) error) error

// CtlBatch is Ctl whose writes are applied through batch: all of a
// write's lines take effect, or none do, and the error names the line that
// failed.
func CtlBatch(name string, perm uint32, cmds []Cmd, status func(ctx context.Context) string, batch Batch) *File {
	return NewFile(name, perm, &ctlHandler{cmds: cmds, status: status, batch: batch})
}

type ctlHandler struct {
	cmds   []Cmd
	status func(ctx context.Context) string
	batch  Batch
}

func (h *ctlHandler) Open(ctx context.Context, mode uint8) (Handle, error) {
	c := &ctlHandle{h: h}
	if readMode(mode) && h.status != nil {
		c.status = []byte(h.status(ctx))
	}
	return c, nil
}

func (h *ctlHandler) Length(ctx context.Context) int64 {
	if h.status == nil {
		return 0
	}
	return int64(len(h.status(ctx)))
}

// contentStat is the status text's length and hash (see
// snapshotHandler.contentStat).
func (h *ctlHandler) contentStat(ctx context.Context) (int64, uint32) {
	if h.status == nil {
		return 0, 0
	}
	text := h.status(ctx)
	return int64(len(text)), crc32.ChecksumIEEE([]byte(text))
}

// run carries out the control message p.
func (h *ctlHandler) run(ctx context.Context, p []byte) error {
	calls, err := parseLines(p, h.cmds)
	if err != nil {
		return err
	}
	run := func(ctx context.Context) error {
		for _, c := range calls {
			if err := ctx.Err(); err != nil {
				return err // flushed, or the client went away
			}
			if c.cmd.Run == nil {
				continue
			}
			if err := c.cmd.Run(ctx, c.args); err != nil {
				return c.fail(err, len(calls))
			}
		}
		return nil
	}
	if h.batch == nil {
		return run(ctx)
	}
	return h.batch(ctx, run)
}

// ctlCall is one parsed line of a control message.
type ctlCall struct {
	cmd  *Cmd
	args []string
	line int // counted from 1, blank lines included
}

// parseLines parses each line of the control message p against cmds,
// skipping blank lines. A message with no command is an error, as is the
// first line that ParseCtl refuses.
func parseLines(p []byte, cmds []Cmd) ([]ctlCall, error) {
	var calls []ctlCall
	n := 0
	for line := range strings.SplitSeq(string(p), "\n") {
		n++
		if strings.Trim(line, separators) == "" {
			continue
		}
		cmd, args, err := ParseCtl(line, cmds)
		if err != nil {
			return nil, err
		}
		calls = append(calls, ctlCall{cmd, args, n})
	}
	if len(calls) == 0 {
		return nil, plan9.ErrEmptyCtl
	}
	return calls, nil
}

// fail is err, the error of c's command, as the writer sees it: prefixed
// with the verb, and with the line if the message had several (of n
// commands in all).
func (c ctlCall) fail(err error, n int) error {
	e := &runError{verb: c.cmd.Name, err: err}
	if n > 1 {
		e.line = c.line
	}
	return e
}

// ctlHandle is one open of a ctl file. Its status text is taken at open
// and served from that copy, so that a reader spanning several reads
// sees one version; after a write on the same open (plan9port's `9p
// rdwr`: write a command, read the answer), a read at offset 0 takes it
// again.
type ctlHandle struct {
	h      *ctlHandler
	mu     sync.Mutex
	status []byte // guarded by mu
	stale  bool   // guarded by mu: a write has changed what status would say
}

func (c *ctlHandle) Read(ctx context.Context, p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stale && off == 0 && c.h.status != nil {
		c.status, c.stale = []byte(c.h.status(ctx)), false
	}
	return readAt(c.status, p, off), nil
}

func (c *ctlHandle) Write(ctx context.Context, p []byte, off int64) (int, error) {
	if err := c.h.run(ctx, p); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
	return len(p), nil
}

func (c *ctlHandle) Close(ctx context.Context) error { return nil }

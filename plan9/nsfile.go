package plan9

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// NSCmd is one command of a namespace file (namespace(6)).
type NSCmd struct {
	// Op is bind, mount, unmount, cd, import, export or "." (include
	// another namespace file).
	Op string
	// Flags holds the letters of the leading option word of bind,
	// mount and import: some of a, b, c and C, e.g. "bc".
	Flags string
	// Args are the remaining words, unquoted.
	Args []string
	// Line is the 1-based line number in the file, 0 if unknown.
	Line int
}

// nsSyntax describes the shape of one namespace command.
type nsSyntax struct {
	flags    bool // takes a leading -abcC option word
	min, max int  // argument count; max < 0 means no limit
	usage    string
}

func nsSyntaxOf(op string) (nsSyntax, bool) {
	switch op {
	case "bind":
		return nsSyntax{true, 2, 2, "bind [-abcC] new old"}, true
	case "mount":
		return nsSyntax{true, 2, 3, "mount [-abcC] server old [spec]"}, true
	case "unmount":
		return nsSyntax{false, 1, 2, "unmount [new] old"}, true
	case "cd":
		return nsSyntax{false, 1, 1, "cd dir"}, true
	case "import":
		return nsSyntax{true, 2, -1, "import [-abcC] host [remotepath] mountpoint"}, true
	case "export":
		return nsSyntax{false, 2, -1, "export arg arg..."}, true
	case ".":
		return nsSyntax{false, 1, 1, ". file"}, true
	}
	return nsSyntax{}, false
}

// checkFlags validates the letters of a -abcC option word.
func checkFlags(flags string) error {
	if flags == "" {
		return errors.New("missing flag letter after '-'")
	}
	for _, r := range flags {
		if !strings.ContainsRune("abcC", r) {
			return fmt.Errorf("bad flag %q", r)
		}
	}
	if strings.ContainsRune(flags, 'a') && strings.ContainsRune(flags, 'b') {
		return errors.New("-a and -b are mutually exclusive")
	}
	return nil
}

// ParseNSLine parses one namespace-file line, as written to a ctl
// file. It returns false, with no error, for a blank line or a
// comment: a line whose first non-blank character is '#'. Errors name
// the command but carry no line number.
func ParseNSLine(line string) (NSCmd, bool, error) {
	t := strings.TrimLeft(line, " \t\r\n")
	if t == "" || t[0] == '#' {
		return NSCmd{}, false, nil
	}
	words, err := Tokenize(line)
	if err != nil {
		return NSCmd{}, false, err
	}
	if len(words) == 0 {
		return NSCmd{}, false, nil
	}
	op, args := words[0], words[1:]
	syn, ok := nsSyntaxOf(op)
	if !ok {
		return NSCmd{}, false, fmt.Errorf("unknown command %q", op)
	}
	var flags string
	if syn.flags && len(args) > 0 && strings.HasPrefix(args[0], "-") {
		flags = args[0][1:]
		args = args[1:]
		if err := checkFlags(flags); err != nil {
			return NSCmd{}, false, fmt.Errorf("%s: %w", op, err)
		}
	}
	if len(args) < syn.min || (syn.max >= 0 && len(args) > syn.max) {
		return NSCmd{}, false, fmt.Errorf("%s: usage: %s", op, syn.usage)
	}
	return NSCmd{Op: op, Flags: flags, Args: args}, true, nil
}

// ParseNS parses a namespace file. Lines are split into words by
// Tokenize; blank lines and comment lines are skipped. Errors begin
// with "line N: " and name the command.
func ParseNS(r io.Reader) ([]NSCmd, error) {
	var cmds []NSCmd
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if line != "" {
			c, ok, perr := ParseNSLine(line)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w", n, perr)
			}
			if ok {
				c.Line = n
				cmds = append(cmds, c)
			}
		}
		if err == io.EOF {
			return cmds, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: read namespace: %w", n, err)
		}
	}
}

// String formats c as a namespace-file line, quoting words with
// Quote: bind -b /a /b, mount -c unix!/tmp/x /n/x spec. For a command
// that takes flags, a first argument beginning with '-' cannot be told
// from an option word when read back.
func (c NSCmd) String() string {
	var b strings.Builder
	b.WriteString(Quote(c.Op))
	if c.Flags != "" {
		b.WriteString(" -")
		b.WriteString(c.Flags)
	}
	for _, a := range c.Args {
		b.WriteByte(' ')
		b.WriteString(Quote(a))
	}
	return b.String()
}

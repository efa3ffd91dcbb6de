package smarthttp

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestPktReader(t *testing.T) {
	p := newPktReader(bytes.NewReader([]byte("0006a\n00000001000aabcdef" + "0004")))
	for _, want := range []string{"a\n", "", "", "abcdef"} {
		line, flush, err := p.next()
		if err != nil || string(line) != want || flush != (want == "") {
			t.Fatalf("next: %q %v %v, want %q", line, flush, err, want)
		}
	}
	if _, _, err := p.next(); err != errPktLength {
		t.Fatalf("0004: %v, want %v", err, errPktLength)
	}
}

// FuzzPktReader reads pkt-lines, then a fetch request and a push's
// commands, from arbitrary bytes: no panic, lines within bounds, and
// an error for each stream that is not whole.
func FuzzPktReader(f *testing.F) {
	for _, s := range []string{
		"", "0000", "0006a\n0000", "000", "zzzz", "0004", "fff1", "0001", "0002",
		"0032want 0123456789012345678901234567890123456789\n00000009done\n",
		"0032want 0123456789012345678901234567890123456789\n000cdeepen 100000032have 0123456789012345678901234567890123456789\n0000",
		"0062" + zero + " 0123456789012345678901234567890123456789 refs/heads/main\x00report-status\n0000PACK",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := newPktReader(bytes.NewReader(b))
		for {
			line, flush, err := p.next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, errPktTruncated) && err != errPktLength {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(line) > maxPayload || flush && line != nil {
				t.Fatalf("line of %d bytes, flush %v", len(line), flush)
			}
		}
		readUploadRequest(newPktReader(bytes.NewReader(b)))
		x := &exchange{h: &handler{o: Options{MaxRequest: 1 << 20}}, body: newPktReader(bytes.NewReader(b))}
		x.readCommands()
	})
}

package styx_test

// Trace replay, after 9fans.net/go/plan9/srv9p's TestTrace: each
// testdata/trace/*.txt is a transcript of requests sent to a server
// serving a fresh memFS tree (owner glenda, its clock stopped at
// 1700000000) and the replies expected, in the syntax of Fcall.String.
//
//	# comment
//	Tstat tag 1 fid 1           a request to send (see parseRequest)
//	Rstat tag 1 stat …          a reply expected, compared with String()
//	Rread tag 1 count 5 data "hello"
//	                            …with its data compared too
//	raw 07000000c80500          bytes to send, in hex
//
// A run of R-lines is matched in any order against as many replies.
// After the last line the client hangs up; no reply may be left.

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cheshire/styx"
)

func TestTrace(t *testing.T) {
	files, err := filepath.Glob("testdata/trace/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/trace")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { replay(t, file) })
	}
}

func replay(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, newMemFS("glenda"))
	r := rawDial(t, addr)
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		pos := fmt.Sprintf("%s:%d", file, i+1)
		line := strings.TrimSpace(lines[i])
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "raw "):
			b, err := hex.DecodeString(strings.TrimSpace(line[4:]))
			if err != nil {
				t.Fatalf("%s: %v", pos, err)
			}
			r.write(b)
		case line[0] == 'T':
			f, err := parseRequest(line)
			if err != nil {
				t.Fatalf("%s: %v", pos, err)
			}
			r.send(f)
		case line[0] == 'R':
			var want []string
			for ; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "R"); i++ {
				want = append(want, strings.TrimSpace(lines[i]))
			}
			i--
			var have []string
			for range want {
				f, err := r.tryRecv(5 * time.Second)
				if err != nil {
					t.Fatalf("%s: reading reply: %v", pos, err)
				}
				s := f.String()
				if f.Type == styx.Rread {
					s += " data " + strconv.Quote(string(f.Data))
				}
				have = append(have, s)
			}
			if missing, extra := unmatched(want, have); len(missing) > 0 {
				t.Fatalf("%s: reply mismatch:\nhave %s\nwant %s", pos, strings.Join(extra, "\n     "), strings.Join(missing, "\n     "))
			}
		default:
			t.Fatalf("%s: cannot parse %q", pos, line)
		}
	}
	r.nc.(*net.TCPConn).CloseWrite()
	if f, err := r.tryRecv(5 * time.Second); err == nil {
		t.Fatalf("%s: reply after the end: %v", file, f)
	} else if err != io.EOF {
		t.Fatalf("%s: after the end: %v, want EOF", file, err)
	}
}

// unmatched pairs want with have, order aside. A wanted Rread without
// data matches a reply whatever its data.
func unmatched(want, have []string) (missing, extra []string) {
	extra = slices.Clone(have)
	for _, w := range want {
		i := slices.IndexFunc(extra, func(h string) bool {
			return h == w || strings.HasPrefix(w, "Rread ") && !strings.Contains(w, " data ") && strings.HasPrefix(h, w+" data ")
		})
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		extra = slices.Delete(extra, i, i+1)
	}
	return missing, extra
}

var typeByName = map[string]uint8{
	"Tversion": styx.Tversion, "Tauth": styx.Tauth, "Tattach": styx.Tattach, "Tflush": styx.Tflush,
	"Twalk": styx.Twalk, "Topen": styx.Topen, "Tcreate": styx.Tcreate, "Tread": styx.Tread,
	"Twrite": styx.Twrite, "Tclunk": styx.Tclunk, "Tremove": styx.Tremove, "Tstat": styx.Tstat,
}

// parseRequest parses a T-message in the syntax of Fcall.String, with
// `data "…"` for the data of a Twrite. Twstat is not supported.
func parseRequest(line string) (*styx.Fcall, error) {
	toks, err := tokenize(line)
	if err != nil {
		return nil, err
	}
	typ, ok := typeByName[toks[0]]
	if !ok {
		return nil, fmt.Errorf("unknown request %q", toks[0])
	}
	f := &styx.Fcall{Type: typ}
	if len(toks)%2 != 1 {
		return nil, fmt.Errorf("odd number of fields in %q", line)
	}
	for i := 1; i < len(toks); i += 2 {
		key, val := toks[i], toks[i+1]
		num := func(bits int) uint64 {
			if err != nil {
				return 0
			}
			var v int64
			if v, err = strconv.ParseInt(val, 0, 64); err == nil && v < 0 { // afid -1
				return uint64(v) & (1<<bits - 1)
			}
			var u uint64
			u, err = strconv.ParseUint(val, 0, bits)
			return u
		}
		str := func() string {
			if err != nil {
				return ""
			}
			var s string
			s, err = strconv.Unquote(val)
			return s
		}
		switch key {
		case "tag":
			f.Tag = uint16(num(16))
		case "fid":
			f.Fid = uint32(num(32))
		case "afid":
			f.Afid = uint32(num(32))
		case "newfid":
			f.Newfid = uint32(num(32))
		case "msize":
			f.Msize = uint32(num(32))
		case "oldtag":
			f.Oldtag = uint16(num(16))
		case "mode":
			f.Mode = uint8(num(8))
		case "perm":
			f.Perm = uint32(num(32))
		case "offset":
			f.Offset = num(64)
		case "count":
			f.Count = uint32(num(32))
		case "version":
			f.Version = str()
		case "uname":
			f.Uname = str()
		case "aname":
			f.Aname = str()
		case "name":
			f.Name = str()
		case "data":
			f.Data = []byte(str())
		case "wname":
			if !strings.HasPrefix(val, "[") || !strings.HasSuffix(val, "]") {
				return nil, fmt.Errorf("wname %s: want [\"a\" \"b\"]", val)
			}
			var names []string
			names, err = tokenize(val[1 : len(val)-1])
			for j := range names {
				if err == nil {
					names[j], err = strconv.Unquote(names[j])
				}
			}
			f.Wname = names
		default:
			return nil, fmt.Errorf("unknown field %q", key)
		}
		if err != nil {
			return nil, fmt.Errorf("field %s %s: %v", key, val, err)
		}
	}
	return f, nil
}

// tokenize splits s at spaces, keeping Go-quoted strings and bracketed
// lists whole.
func tokenize(s string) ([]string, error) {
	var toks []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return toks, nil
		}
		var tok string
		switch s[0] {
		case '"':
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad string at %q", s)
			}
			tok = q
		case '[':
			end := 1
			for end < len(s) && s[end] != ']' {
				if s[end] == '"' {
					q, err := strconv.QuotedPrefix(s[end:])
					if err != nil {
						return nil, fmt.Errorf("bad string at %q", s[end:])
					}
					end += len(q)
					continue
				}
				end++
			}
			if end == len(s) {
				return nil, fmt.Errorf("unclosed [ in %q", s)
			}
			tok = s[:end+1]
		default:
			tok, _, _ = strings.Cut(s, " ")
		}
		toks = append(toks, tok)
		s = s[len(tok):]
	}
}

// TestTraceParser checks the parser on every request of the codec's
// samples: String of the parsed request is String of the original.
func TestTraceParser(t *testing.T) {
	for _, f := range sampleFcalls() {
		if f.Type%2 == 1 || f.Type == styx.Twstat {
			continue
		}
		line := f.String()
		if f.Type == styx.Twrite {
			line = strings.Replace(line, fmt.Sprintf("count %d", len(f.Data)), "data "+strconv.Quote(string(f.Data)), 1)
		}
		g, err := parseRequest(line)
		if err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if g.String() != f.String() || string(g.Data) != string(f.Data) {
			t.Errorf("parse(%q) = %v", line, g)
		}
	}
}

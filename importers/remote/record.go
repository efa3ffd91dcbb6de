package remote

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"

	"cheshire/plan9"
)

// recordMagic is the first line of a record.
const recordMagic = "cheshire 1"

// maxAddrs is how many addresses a record holds at most.
const maxAddrs = 8

// Record is what a node publishes about itself in the DHT under its key
// (the BEP 44 value), as text:
//
//	cheshire 1
//	addr tls!192.0.2.7!5641
//	raft tls!192.0.2.7!41235
//	export /tmp/pub
//
// Addrs are where it serves 9P over mutual TLS; Raft, if any, where its
// raft group listens (mutual TLS too: see raftgroup); Exports the paths it
// exports to every key. A reader ignores lines of kinds it does not know,
// so later versions can add kinds.
type Record struct {
	Addrs   []string
	Raft    string
	Exports []string
}

// Encode formats r in at most max bytes. Exports that do not fit are left
// out, from the last; dropped says how many. The addresses (at most
// maxAddrs) always go in: if they alone do not fit, Encode fails.
func (r Record) Encode(max int) (value []byte, dropped int, err error) {
	var b bytes.Buffer
	b.WriteString(recordMagic + "\n")
	if len(r.Addrs) > maxAddrs {
		return nil, 0, fmt.Errorf("record: %d addresses, at most %d", len(r.Addrs), maxAddrs)
	}
	for _, a := range r.Addrs {
		if err := checkAddr(a); err != nil {
			return nil, 0, fmt.Errorf("record: %w", err)
		}
		b.WriteString("addr " + a + "\n")
	}
	if r.Raft != "" {
		if err := checkAddr(r.Raft); err != nil {
			return nil, 0, fmt.Errorf("record: raft %w", err)
		}
		b.WriteString("raft " + r.Raft + "\n")
	}
	if b.Len() > max {
		return nil, 0, fmt.Errorf("record: the addresses take %d bytes, more than %d", b.Len(), max)
	}
	for i, e := range r.Exports {
		line := "export " + plan9.Quote(e) + "\n"
		if b.Len()+len(line) > max {
			return b.Bytes(), len(r.Exports) - i, nil
		}
		b.WriteString(line)
	}
	return b.Bytes(), 0, nil
}

// checkAddr accepts tls!HOST!PORT dial strings.
func checkAddr(a string) error {
	d, err := plan9.ParseDial(a)
	if err != nil {
		return err
	}
	if d.Net != "tls" {
		return fmt.Errorf("address %q is not tls!HOST!PORT", a)
	}
	return nil
}

// ParseRecord reads a record. Errors name the line at fault.
func ParseRecord(value []byte) (Record, error) {
	var r Record
	sc := bufio.NewScanner(bytes.NewReader(value))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if n == 1 {
			if line != recordMagic {
				return Record{}, fmt.Errorf("record: not a cheshire record (first line %.20q)", line)
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		words, err := plan9.Tokenize(line)
		if err != nil {
			return Record{}, fmt.Errorf("record: line %d: %w", n, err)
		}
		switch words[0] {
		case "addr":
			if len(words) != 2 {
				return Record{}, fmt.Errorf("record: line %d: want addr tls!HOST!PORT", n)
			}
			if err := checkAddr(words[1]); err != nil {
				return Record{}, fmt.Errorf("record: line %d: %w", n, err)
			}
			if len(r.Addrs) == maxAddrs {
				return Record{}, fmt.Errorf("record: line %d: more than %d addresses", n, maxAddrs)
			}
			r.Addrs = append(r.Addrs, words[1])
		case "raft":
			if len(words) != 2 || checkAddr(words[1]) != nil || r.Raft != "" {
				return Record{}, fmt.Errorf("record: line %d: want one raft tls!HOST!PORT", n)
			}
			r.Raft = words[1]
		case "export":
			if len(words) != 2 || !strings.HasPrefix(words[1], "/") || path.Clean(words[1]) != words[1] {
				return Record{}, fmt.Errorf("record: line %d: want export /CLEAN/PATH", n)
			}
			r.Exports = append(r.Exports, words[1])
		}
	}
	if err := sc.Err(); err != nil {
		return Record{}, fmt.Errorf("record: %w", err)
	}
	if n == 0 {
		return Record{}, fmt.Errorf("record: empty")
	}
	return r, nil
}

package dns

import (
	"bytes"
	"strings"

	"github.com/miekg/dns"
)

// canon returns name fully qualified and in lower case, the form owner
// names are kept and looked up in.
func canon(name string) string { return dns.CanonicalName(name) }

// revLabels returns the labels of name as they are on the wire (escapes
// undone), lower-cased, the last label first: the key of the canonical
// order of RFC 4034 section 6.1. A name that does not pack gives nil.
func revLabels(name string) [][]byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return nil
	}
	buf = bytes.ToLower(buf[:n])
	var labels [][]byte
	for off := 0; off < len(buf); {
		l := int(buf[off])
		if l == 0 || off+1+l > len(buf) {
			break
		}
		labels = append(labels, buf[off+1:off+1+l])
		off += 1 + l
	}
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return labels
}

// compareLabels orders two names given by revLabels canonically.
func compareLabels(a, b [][]byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := bytes.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// parentName returns the name one label up from name ("" for the root).
func parentName(name string) string {
	if name == "." || name == "" {
		return ""
	}
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// validZoneName reports whether name (fully qualified, lower case) may
// name a zone: letters, digits, '-' and '_' in labels, not the root. The
// name is used as a file and directory name, so nothing else is allowed.
func validZoneName(name string) bool {
	if name == "." || len(name) > 254 || !strings.HasSuffix(name, ".") {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// zoneFileName is the name of a zone in the file tree and in the data
// directory: its name without the final dot.
func zoneFileName(origin string) string { return strings.TrimSuffix(origin, ".") }

package store

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOffer: the offer's parser never panics; what it takes is a
// positive total with a per-key quota no larger, or off; sizes in bytes
// read back as written.
func FuzzParseOffer(f *testing.F) {
	for _, s := range []string{"off", "1", "10G", "10GiB per-key 1g", "512m", "1T per-key 1T", "0", "-1",
		"9223372036854775807", "8388608t", "1KB", "1kib", "12ib", "1 per-key", "1G per key 1M", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseOffer(strings.Fields(s))
		if err != nil {
			return
		}
		if q.Total == 0 {
			if q.PerKey != 0 {
				t.Fatalf("%q: off with a per-key quota %d", s, q.PerKey)
			}
			return
		}
		if q.Total < 0 || q.PerKey < 0 || q.PerKey > q.Total {
			t.Fatalf("%q: %+v", s, q)
		}
		n, err := parseSize(strconv.FormatInt(q.Total, 10))
		if err != nil || n != q.Total {
			t.Fatalf("%q: %d reads back as %d (%v)", s, q.Total, n, err)
		}
	})
}

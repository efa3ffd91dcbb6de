// Partial clone: the filters of a fetch (git rev-list --filter).

package smarthttp

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// filter is a fetch's object filter: blob:none leaves out every blob,
// blob:limit=N those of more than N bytes.
type filter struct {
	limit int64 // the largest blob sent; -1 for none
}

// parseFilter parses a filter spec as git sends it. Only blob:none and
// blob:limit=N[kmg] are served.
func parseFilter(spec string) (*filter, error) {
	if spec == "blob:none" {
		return &filter{limit: -1}, nil
	}
	if v, ok := strings.CutPrefix(spec, "blob:limit="); ok {
		mult := int64(1)
		switch {
		case strings.HasSuffix(v, "k"):
			mult, v = 1<<10, strings.TrimSuffix(v, "k")
		case strings.HasSuffix(v, "m"):
			mult, v = 1<<20, strings.TrimSuffix(v, "m")
		case strings.HasSuffix(v, "g"):
			mult, v = 1<<30, strings.TrimSuffix(v, "g")
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil && n >= 0 && n <= 1<<40 {
			return &filter{limit: n * mult}, nil
		}
		return nil, fmt.Errorf("git: bad filter %q", spec)
	}
	if len(spec) > 48 {
		spec = spec[:48]
	}
	return nil, fmt.Errorf("git: filter %q not supported: blob:none and blob:limit=N are", spec)
}

// omit returns whether the filter leaves out blob h.
func (f *filter) omit(s storer.EncodedObjectStorer, h plumbing.Hash) bool {
	if f.limit < 0 {
		return true
	}
	o, err := s.EncodedObject(plumbing.BlobObject, h)
	return err == nil && o.Size() > f.limit
}

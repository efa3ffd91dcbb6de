// A collection on disk: its schema file and its append-only, fsynced
// file of deltas.

package coll

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"cheshire/atomicfile"
)

// open loads collection name from disk: its schema, then its deltas. A
// last line cut short by a crash is cut off; other bad lines are
// skipped and counted.
func (c *Coll) open(name string) (*collection, error) {
	col := c.newCollection(name)
	data, err := os.ReadFile(filepath.Join(c.dirOf(name), "schema"))
	if err != nil {
		return nil, fmt.Errorf("coll: %s: %w", name, err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "field" {
			return nil, fmt.Errorf("coll: %s: schema line %d: bad line %q", name, i+1, line)
		}
		fname, fl, err := parseField(f[1] + ":" + f[2] + ":" + f[3])
		if err != nil {
			return nil, fmt.Errorf("coll: %s: schema line %d: %w", name, i+1, err)
		}
		col.fields[fname] = fl
		col.order = append(col.order, fname)
	}
	path := filepath.Join(c.dirOf(name), "deltas")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0600)
	if err != nil {
		return nil, fmt.Errorf("coll: %w", err)
	}
	good := int64(0)
	r := bufio.NewReaderSize(f, 64<<10)
	now := c.o.Now()
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break // a line without its newline was cut by a crash: not acknowledged
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("coll: %s: %w", path, err)
		}
		good += int64(len(line))
		d, err := ParseDelta(strings.TrimSuffix(line, "\n"))
		if err == nil {
			err = col.check(d, now)
		}
		if err != nil {
			col.count(err)
			continue
		}
		col.add(d)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("coll: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("coll: %w", err)
	}
	col.file = f
	return col, nil
}

// merge writes the deltas of ds that col does not hold to its file,
// fsyncs it, then adds them to the set; it returns how many were new.
// ds have been checked.
func (c *Coll) merge(col *collection, ds []*Delta) (int, error) {
	col.fmu.Lock()
	defer col.fmu.Unlock()
	c.mu.Lock()
	var fresh []*Delta
	seen := map[[32]byte]bool{}
	for _, d := range ds {
		h := d.Hash()
		if _, ok := col.deltas[h]; ok || seen[h] {
			col.st.Duplicate++
			continue
		}
		seen[h] = true
		fresh = append(fresh, d)
	}
	c.mu.Unlock()
	if len(fresh) == 0 {
		return 0, nil
	}
	var b strings.Builder
	for _, d := range fresh {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	if _, err := col.file.WriteString(b.String()); err != nil {
		return 0, fmt.Errorf("coll: %s: %w", col.name, err)
	}
	if err := col.file.Sync(); err != nil {
		return 0, fmt.Errorf("coll: %s: %w", col.name, err)
	}
	c.mu.Lock()
	for _, d := range fresh {
		col.add(d)
	}
	c.mu.Unlock()
	return len(fresh), nil
}

// saveSchema writes col's schema file. Coll.mu may be held.
func (c *Coll) saveSchema(col *collection) error {
	var b strings.Builder
	for _, n := range col.order {
		f := col.fields[n]
		fmt.Fprintf(&b, "field %s %s %s\n", n, f.Type, f.Resolver)
	}
	if err := atomicfile.Write(filepath.Join(c.dirOf(col.name), "schema"), []byte(b.String()), 0600); err != nil {
		return fmt.Errorf("coll: %w", err)
	}
	return nil
}

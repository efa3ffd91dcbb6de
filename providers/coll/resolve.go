package coll

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Types of properties.
var types = []string{"string", "int", "float", "bool", "list"}

// Resolvers: how a lossy view makes one value of a property's deltas.
var resolvers = []string{"last-writer-wins", "first-writer-wins", "max", "min", "sum", "union"}

// A field is a property of a collection's schema.
type field struct {
	Type     string
	Resolver string
}

// checkType refuses v if it is not a value of type typ.
func checkType(typ, v string) error {
	switch typ {
	case "int":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("%w: %q is not an int", ErrBadValue, v)
		}
	case "float":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("%w: %q is not a finite float", ErrBadValue, v)
		}
	case "bool":
		if v != "true" && v != "false" {
			return fmt.Errorf("%w: %q is not true or false", ErrBadValue, v)
		}
	}
	return nil
}

// resolverFits reports whether resolver r may resolve type typ.
func resolverFits(r, typ string) error {
	if !slices.Contains(resolvers, r) {
		return fmt.Errorf("coll: bad resolver %q: want one of %s", r, strings.Join(resolvers, ", "))
	}
	if r == "sum" && typ != "int" && typ != "float" {
		return fmt.Errorf("coll: bad resolver: sum wants an int or float property, not %s", typ)
	}
	return nil
}

// defaultResolver is a type's resolver unless the schema names one.
func defaultResolver(typ string) string {
	if typ == "list" {
		return "union"
	}
	return "last-writer-wins"
}

// order is the total order of deltas: time, then author, then hash, so
// that every replica picks the same winner.
func order(a, b *Delta) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Author, b.Author); c != 0 {
		return c
	}
	ha, hb := a.Hash(), b.Hash()
	return bytes.Compare(ha[:], hb[:])
}

// compareValues orders two values of type typ (both checked).
func compareValues(typ, a, b string) int {
	switch typ {
	case "int":
		x, _ := strconv.ParseInt(a, 10, 64)
		y, _ := strconv.ParseInt(b, 10, 64)
		return cmp.Compare(x, y)
	case "float":
		x, _ := strconv.ParseFloat(a, 64)
		y, _ := strconv.ParseFloat(b, 64)
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b) // string, list; bool: false < true
}

// resolve makes one value of a property's live deltas, sorted by order:
// "" when there are none. A union is its distinct values, sorted, a
// line each.
func resolve(f field, ds []*Delta) string {
	if len(ds) == 0 {
		return ""
	}
	switch f.Resolver {
	case "first-writer-wins":
		return ds[0].Value
	case "max", "min":
		best := ds[0].Value
		for _, d := range ds[1:] {
			c := compareValues(f.Type, d.Value, best)
			if f.Resolver == "max" && c > 0 || f.Resolver == "min" && c < 0 {
				best = d.Value
			}
		}
		return best
	case "sum":
		if f.Type == "float" {
			var s float64
			for _, d := range ds { // in order, so every replica rounds alike
				x, _ := strconv.ParseFloat(d.Value, 64)
				s += x
			}
			return strconv.FormatFloat(s, 'g', -1, 64)
		}
		var s int64
		for _, d := range ds {
			x, _ := strconv.ParseInt(d.Value, 10, 64)
			s += x
		}
		return strconv.FormatInt(s, 10)
	case "union":
		vals := make([]string, 0, len(ds))
		for _, d := range ds {
			vals = append(vals, d.Value)
		}
		slices.Sort(vals)
		return strings.Join(slices.Compact(vals), "\n")
	}
	return ds[len(ds)-1].Value // last-writer-wins
}

// parseField parses FIELD:TYPE or FIELD:TYPE:RESOLVER.
func parseField(s string) (string, field, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || !validName(parts[0]) {
		return "", field{}, fmt.Errorf("coll: bad field %q: want FIELD:TYPE[:RESOLVER]", s)
	}
	f := field{Type: parts[1], Resolver: defaultResolver(parts[1])}
	if !slices.Contains(types, f.Type) {
		return "", field{}, fmt.Errorf("coll: bad type %q: want one of %s", f.Type, strings.Join(types, ", "))
	}
	if len(parts) == 3 {
		f.Resolver = parts[2]
	}
	if err := resolverFits(f.Resolver, f.Type); err != nil {
		return "", field{}, err
	}
	return parts[0], f, nil
}

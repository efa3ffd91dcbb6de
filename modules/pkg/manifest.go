package pkg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"cheshire/module"
	"cheshire/nodekey"
	"cheshire/plan9"
)

// Bounds on what a manifest may hold.
const (
	maxNameLen    = 64
	maxVersionLen = 64
	maxDescLen    = 1024
)

// known reports whether key is a manifest key.
func known(key string) bool {
	return singleton(key) || key == "dep" || key == "requires"
}

// singleton reports whether key may appear at most once.
func singleton(key string) bool {
	switch key {
	case "name", "version", "description", "author", "wasm", "mount", "lazy":
		return true
	}
	return false
}

// ParseManifest parses a package manifest and returns it with the wasm
// hash its wasm line names ("" if it has none). Errors name the line.
func ParseManifest(text []byte) (module.Manifest, string, error) {
	var m module.Manifest
	if len(text) > MaxManifest {
		return m, "", fmt.Errorf("manifest: %d bytes, more than %d", len(text), MaxManifest)
	}
	if !utf8.Valid(text) {
		return m, "", errors.New("manifest: not valid UTF-8")
	}
	var hash string
	seen := map[string]int{} // singleton key -> line
	deps := map[string]int{} // dep -> line
	for i, line := range strings.Split(string(text), "\n") {
		n := i + 1
		w, skip, err := manifestLine(line)
		if err != nil {
			return module.Manifest{}, "", fmt.Errorf("manifest line %d: %w", n, err)
		}
		if skip {
			continue
		}
		key, args := w[0], w[1:]
		if !known(key) {
			return module.Manifest{}, "", fmt.Errorf("manifest line %d: unknown key %q", n, key)
		}
		if singleton(key) {
			if first, ok := seen[key]; ok {
				return module.Manifest{}, "", fmt.Errorf("manifest line %d: duplicate %s (first on line %d)", n, key, first)
			}
			seen[key] = n
		}
		var v string
		if key != "description" && key != "requires" {
			if len(args) != 1 {
				return module.Manifest{}, "", fmt.Errorf("manifest line %d: %s wants one value, has %d", n, key, len(args))
			}
			v = args[0]
		}
		switch key {
		case "name":
			err = checkName(v)
			m.Name = v
		case "version":
			switch {
			case v == "":
				err = errors.New("empty version")
			case len(v) > maxVersionLen:
				err = fmt.Errorf("version longer than %d bytes", maxVersionLen)
			}
			m.Version = v
		case "description":
			m.Description = strings.Join(args, " ")
			if len(args) == 0 {
				err = errors.New("description wants a value")
			} else if len(m.Description) > maxDescLen {
				err = fmt.Errorf("description longer than %d bytes", maxDescLen)
			}
		case "author":
			err = checkAuthor(v)
			m.Author = v
		case "wasm":
			err = checkHash(v)
			hash = v
		case "dep":
			if err = checkName(v); err != nil {
				break
			}
			if first, ok := deps[v]; ok {
				err = fmt.Errorf("duplicate dep %s (first on line %d)", v, first)
				break
			}
			deps[v] = n
			m.Deps = append(m.Deps, v)
		case "mount":
			if !strings.HasPrefix(v, "/") || path.Clean(v) != v {
				err = fmt.Errorf("mount %q: want a clean absolute path", v)
			}
			m.Mount = v
		case "lazy":
			switch v {
			case "on":
				m.Lazy = true
			case "off":
				m.Lazy = false
			default:
				err = fmt.Errorf("lazy %q: want on or off", v)
			}
		case "requires":
			var p module.Perm
			p, err = module.ParsePerm(args)
			m.Requires = append(m.Requires, p)
		}
		if err != nil {
			return module.Manifest{}, "", fmt.Errorf("manifest line %d: %w", n, err)
		}
	}
	switch {
	case seen["name"] == 0:
		return module.Manifest{}, "", errors.New("manifest: no name line")
	case seen["version"] == 0:
		return module.Manifest{}, "", errors.New("manifest: no version line")
	}
	if line, ok := deps[m.Name]; ok {
		return module.Manifest{}, "", fmt.Errorf("manifest line %d: %s depends on itself", line, m.Name)
	}
	return m, hash, nil
}

// manifestLine splits one manifest line into words, reporting blank
// lines and comments as skip.
func manifestLine(line string) (words []string, skip bool, err error) {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return nil, true, nil
	}
	for _, r := range line {
		if r < ' ' && r != '\t' && r != '\r' || r == 0x7f {
			return nil, false, fmt.Errorf("control character %q", r)
		}
	}
	w, err := plan9.Tokenize(line)
	if err != nil {
		return nil, false, err
	}
	if len(w) == 0 {
		return nil, true, nil
	}
	return w, false, nil
}

// checkName checks a module name: [a-z0-9][a-z0-9._-]*, at most 64 bytes.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("name %q longer than %d bytes", s, maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("name %q: want [a-z0-9][a-z0-9._-]*", s)
		}
	}
	return nil
}

// checkAuthor checks that s is a public key in canonical z-base-32.
func checkAuthor(s string) error {
	k, err := nodekey.Decode(s)
	if err != nil {
		return fmt.Errorf("author: %w", err)
	}
	if nodekey.Encode(k) != s {
		return fmt.Errorf("author: key %q is not in canonical z-base-32", s)
	}
	return nil
}

// checkHash checks that s is "sha256:" and 64 lower-case hex digits.
func checkHash(s string) error {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return fmt.Errorf("wasm %q: want sha256: and 64 lower-case hex digits", s)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return fmt.Errorf("wasm %q: want sha256: and 64 lower-case hex digits", s)
	}
	return nil
}

// setLine returns text with every line whose key is key removed and,
// if line is not empty, line put where the first of them was, or
// else before the first line whose key is before, or else at the end.
// text must parse.
func setLine(text []byte, key, line, before string) []byte {
	lines := strings.Split(string(text), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out []string
	placed := line == ""
	for _, l := range lines {
		w, skip, _ := manifestLine(l)
		if !skip && len(w) > 0 && w[0] == key {
			if !placed {
				out = append(out, line)
				placed = true
			}
			continue
		}
		if !placed && before != "" && !skip && len(w) > 0 && w[0] == before {
			out = append(out, line)
			placed = true
		}
		out = append(out, l)
	}
	if !placed {
		out = append(out, line)
	}
	var b bytes.Buffer
	for _, l := range out {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

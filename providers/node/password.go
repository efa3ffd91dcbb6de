package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"cheshire/atomicfile"
	"cheshire/synth"

	"golang.org/x/crypto/bcrypt"
)

// Passwords are the users' passwords for the node's web sign-in, set
// by each user through /node/password and kept as bcrypt hashes in one
// file ("USER HASH" lines, mode 0600, replaced atomically).
type Passwords struct {
	file string

	mu sync.Mutex // serializes changes of the file
}

// Password lengths, in characters.
const (
	MinPassword = 8
	MaxPassword = 72 // bcrypt's limit, in bytes
)

// NewPasswords keeps passwords in file.
func NewPasswords(file string) *Passwords { return &Passwords{file: file} }

// read returns the file's lines, a user and a hash each.
func (p *Passwords) read() (map[string]string, error) {
	data, err := os.ReadFile(p.file)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: passwords: %w", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m, nil
}

// Check reports whether password is user's.
func (p *Passwords) Check(user, password string) bool {
	m, err := p.read()
	if err != nil || m[user] == "" {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(m[user]), []byte(password)) == nil
}

// checkPassword says what is wrong with a password, if anything.
func checkPassword(user, pw string) error {
	switch {
	case user == "" || strings.HasPrefix(user, "key:") || strings.ContainsAny(user, " \t\n"):
		return fmt.Errorf("node: password: %q cannot be given one (a remote key's view signs in by its key)", user)
	case !utf8.ValidString(pw) || strings.ContainsAny(pw, "\n\r\x00"):
		return errors.New("node: bad password: one line of text")
	case utf8.RuneCountInString(pw) < MinPassword:
		return fmt.Errorf("node: bad password: too short, want at least %d characters", MinPassword)
	case len(pw) > MaxPassword:
		return fmt.Errorf("node: bad password: too long, at most %d bytes", MaxPassword)
	}
	return nil
}

// Set makes password user's, replacing any other.
func (p *Passwords) Set(user, password string) error {
	if err := checkPassword(user, password); err != nil {
		return err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("node: password: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := p.read()
	if err != nil {
		return err
	}
	m[user] = string(h)
	var b strings.Builder
	for _, u := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s %s\n", u, m[u])
	}
	return atomicfile.Write(p.file, []byte(b.String()), 0600)
}

// file is /node/password: write-only, a user's write of one line sets
// that user's password (the attaching user's: no one sets another's).
func (p *Passwords) passwordFile() *synth.File {
	line := func(text string) string { return strings.TrimSuffix(strings.TrimSuffix(text, "\n"), "\r") }
	return synth.CheckedReadWrite("password", 0222,
		func(ctx context.Context) ([]byte, error) { return nil, nil },
		func(ctx context.Context, data []byte) error { return p.Set(synth.User(ctx), line(string(data))) },
		func(ctx context.Context, text string) error {
			if text == "" {
				return nil
			}
			return checkPassword(synth.User(ctx), line(text))
		})
}

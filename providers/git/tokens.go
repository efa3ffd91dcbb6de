package git

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cheshire/atomicfile"
	"cheshire/synth"
)

// The tokens file, /git/tokens (DIR/git/tokens, mode 0600, the owner's
// alone): lines "USER TOKEN", # comments. A git client without a client
// certificate authenticates over HTTPS as USER with TOKEN as password.

// minToken is the shortest token accepted: 16 bytes of hex or base64
// is well past guessing over a network.
const minToken = 16

func (r *Repos) tokensPath() string { return filepath.Join(r.dir, "tokens") }

// tokensFile is /git/tokens.
func (r *Repos) tokensFile() *synth.File {
	return synth.ReadWrite("tokens", 0600,
		func(ctx context.Context) ([]byte, error) {
			b, err := os.ReadFile(r.tokensPath())
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return b, err
		},
		func(ctx context.Context, data []byte) error {
			if _, err := parseTokens(data); err != nil {
				return err
			}
			if err := atomicfile.Write(r.tokensPath(), data, 0600); err != nil {
				return fmt.Errorf("git: tokens: %w", err)
			}
			return nil
		})
}

// parseTokens reads a tokens file: user → token.
func parseTokens(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Fields(t)
		if len(f) != 2 {
			return nil, fmt.Errorf("git: tokens line %d: want USER TOKEN", line)
		}
		if len(f[1]) < minToken {
			return nil, fmt.Errorf("git: tokens line %d: token shorter than %d characters", line, minToken)
		}
		out[f[0]] = f[1]
	}
	return out, sc.Err()
}

// TokenUser reports whether token is user's token in the tokens file.
// The file is read at each call, so an edit takes effect at once.
func (r *Repos) TokenUser(user, token string) bool {
	data, err := os.ReadFile(r.tokensPath())
	if err != nil {
		return false
	}
	ts, err := parseTokens(data)
	if err != nil {
		return false
	}
	want, ok := ts[user]
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1
}

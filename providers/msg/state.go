// The state file: peers, topics and the peers' subscriptions.

package msg

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cheshire/atomicfile"
)

// load reads the state file: peer KEY, topic NAME, sub KEY TOPIC lines.
func (m *Msg) load() error {
	if m.o.Dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(m.o.Dir, "state"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("msg: state: %w", err)
	}
	now := m.o.Now()
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "peer" && len(f) == 2:
			m.peers[f[1]] = &peer{key: f[1], subs: map[string]bool{}, bucket: newBucket(m.o.Burst, now)}
		case f[0] == "topic" && len(f) == 2 && validTopic(f[1]):
			m.topics[f[1]] = m.newTopic(f[1])
		case f[0] == "sub" && len(f) == 3 && m.peers[f[1]] != nil:
			m.peers[f[1]].subs[f[2]] = true
		default:
			return fmt.Errorf("msg: state line %d: bad line %q", i+1, line)
		}
	}
	return nil
}

// save writes the state file.
func (m *Msg) save() error {
	if m.o.Dir == "" {
		return nil
	}
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m.peers)) {
		fmt.Fprintf(&b, "peer %s\n", k)
	}
	for _, n := range slices.Sorted(maps.Keys(m.topics)) {
		fmt.Fprintf(&b, "topic %s\n", n)
	}
	for _, k := range slices.Sorted(maps.Keys(m.peers)) {
		for _, n := range slices.Sorted(maps.Keys(m.peers[k].subs)) {
			fmt.Fprintf(&b, "sub %s %s\n", k, n)
		}
	}
	m.mu.Unlock()
	if err := atomicfile.Write(filepath.Join(m.o.Dir, "state"), []byte(b.String()), 0600); err != nil {
		return fmt.Errorf("msg: %w", err)
	}
	return nil
}

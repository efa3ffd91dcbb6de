package tests

import (
	"testing"

	"cheshire/synth/synthtest"
)

// TestNamespaceConformance walks the whole default namespace of a real
// node, as its owner, with synthtest's checks: distinct qid paths (FUSE
// and v9fs number inodes by them), stat agreeing with directory entries,
// listed names walkable, ".." returning to the parent.
func TestNamespaceConformance(t *testing.T) {
	t.Parallel()
	n := startNode(t, shortTemp(t))
	synthtest.TestRoot(t, n.client(userName(t)), true)
}

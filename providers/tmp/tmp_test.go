package tmp_test

import (
	"testing"

	"cheshire/providers/tmp"
	"cheshire/synth/synthtest"
)

// TestConformance walks a populated tree with the shared conformance
// checker (walks, .., directory reads in 1- and many-entry chunks, stat
// against directory entries).
func TestConformance(t *testing.T) {
	fs := tmp.New("glenda")
	synthtest.TestServer(t, fs, "glenda")
}

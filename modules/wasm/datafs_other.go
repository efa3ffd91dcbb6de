//go:build !unix

package wasm

// Flags of open that package os does not name: not passed on here.
const (
	oDirectory = 0
	oNofollow  = 0
)

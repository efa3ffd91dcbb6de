//go:build unix

package wasm

import "syscall"

// Flags of open that package os does not name.
const (
	oDirectory = syscall.O_DIRECTORY
	oNofollow  = syscall.O_NOFOLLOW
)

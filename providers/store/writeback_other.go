//go:build !linux

package store

import "os"

// startWriteback does nothing here: the commit's fsync writes it all.
func startWriteback(f *os.File, off, n int64) {}

//go:build !wasip1

package sdk

import (
	"log"
)

// Outside WebAssembly there is no node to call: the namespace calls fail
// and Logf goes to the standard logger.

func hostLog(s string) { log.Print(s) }

func hostCall(req []byte) ([]byte, error) { return nil, ErrNotModule }

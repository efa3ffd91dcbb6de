package modules

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The SDK's source travels in the node's binary, so that
// `cheshire module build` can compile a module kept outside the
// repository with no network and no copy of the repository: the module
// is built inside a temporary Go module named "cheshire" that holds
// these packages (see WriteSDK).
//
//go:embed sdk/*.go abi/*.go
var sdkSource embed.FS

// SDKGoVersion is the go directive of the module WriteSDK writes.
const SDKGoVersion = "1.26"

// WriteSDK writes into dir a Go module named "cheshire" holding the
// packages a module imports (cheshire/modules/sdk and
// cheshire/modules/abi), without their tests. A module's main
// package placed below dir then builds with the standard library alone.
func WriteSDK(dir string) error {
	if err := os.MkdirAll(dir, 0755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module cheshire\n\ngo "+SDKGoVersion+"\n"), 0644); err != nil {
		return err
	}
	return fs.WalkDir(sdkSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		data, err := sdkSource.ReadFile(p)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, "modules", filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(out), 0755); err != nil {
			return err
		}
		return os.WriteFile(out, data, 0644)
	})
}

package ns

import (
	"context"

	"cheshire/styx"
	"cheshire/synth"
)

// rootOwner owns a namespace's root tree: only the namespace itself
// (attached as rootOwner) makes directories in it.
const rootOwner = "#/"

// newRootTree returns the file server of a namespace's own root tree,
// "#/": directories made as mount points (and /n and /mnt), and empty
// read-only files where a file is bound. Nothing else lives in it: the
// files a user sees come from what is mounted on its directories.
func newRootTree() *synth.Server {
	root := mountPointDir("/")
	for _, d := range []string{"n", "mnt"} {
		root.Add(mountPointDir(d))
	}
	return synth.NewServer(root, synth.WithOwner(rootOwner))
}

// mountPointDir is a directory of the root tree, in which rootOwner
// makes mount points.
func mountPointDir(name string) *synth.Dir {
	d := synth.NewDir(name, styx.DMDIR|0755)
	d.SetCreate(func(ctx context.Context, name string, perm uint32, mode uint8) (synth.Node, error) {
		if perm&styx.DMDIR != 0 {
			return mountPointDir(name), nil
		}
		return synth.Static(name, 0444, nil), nil
	})
	return d
}

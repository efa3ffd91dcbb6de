package ns

import (
	"context"
	"fmt"

	"cheshire/plan9"
	"cheshire/styx"
)

// Allowed reports, as an error, whether user may open path of their
// own namespace in mode want (plan9.OREAD, OWRITE, ...), judged by the
// file's permission bits as a synthetic server judges them. A directory
// asked for writing means creating and removing in it. Services that
// reach the namespace by other routes than 9P (smart HTTP for /git) ask
// it, so that one set of permissions holds everywhere.
func (m *Manager) Allowed(ctx context.Context, user, path string, want uint8) error {
	root, err := m.Attach(ctx, user, "", nil)
	if err != nil {
		return err
	}
	defer root.Clunk()
	f, err := styx.WalkFile(ctx, root, styx.SplitPath(path))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Clunk()
	d, err := f.Stat(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !plan9.Allowed(d.Mode, d.Uid, d.Gid, user, nil, want) {
		return fmt.Errorf("%s: %w", path, plan9.ErrPerm)
	}
	return nil
}

package modules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"cheshire/plan9"
	"cheshire/styx"
)

// Package sources: where a package file is read from (the owner's
// namespace or the host), how a change to it is seen, and the hot-reload
// watcher that reloads a module when its source changes.

// maxPackage bounds a package file.
const maxPackage = 128 << 20

// A source names a package file: "ns:/PATH" in the owner's namespace or
// "host:/PATH" on the host.

// resolveSource turns what a user wrote into a source: "ns:" and "host:"
// say where; a bare absolute path is looked for in the namespace first.
func (m *Manager) resolveSource(ctx context.Context, user, src string) (string, error) {
	kind, p, ok := strings.Cut(src, ":")
	if !ok || (kind != "ns" && kind != "host") {
		kind, p = "", src
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: source %q: want an absolute path (in the namespace, or host:/PATH)", errInvalid, src)
	}
	p = path.Clean(p)
	switch kind {
	case "ns", "host":
		return kind + ":" + p, nil
	}
	if m.nsm != nil {
		if _, err := m.statNS(ctx, p); err == nil {
			return "ns:" + p, nil
		}
	}
	if _, err := os.Stat(p); err == nil {
		return "host:" + p, nil
	}
	return "", fmt.Errorf("source %s: %w (neither in the namespace nor on the host)", p, plan9.ErrNotFound)
}

// readSource reads a package file.
func (m *Manager) readSource(ctx context.Context, src string) ([]byte, error) {
	kind, p, _ := strings.Cut(src, ":")
	switch kind {
	case "host":
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		defer f.Close()
		return readLimited(f, src)
	case "ns":
		root, err := m.nsm.Attach(ctx, m.owner, "", nil)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		defer root.Clunk()
		data, err := styx.ReadFile(ctx, root, p, maxPackage+1)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		return checkSize(data, src)
	}
	return nil, fmt.Errorf("%w: source %q: unknown kind", errInvalid, src)
}

func readLimited(r io.Reader, src string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPackage+1))
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}
	return checkSize(data, src)
}

// checkSize refuses the data of a package file read with a limit of
// maxPackage+1 bytes if it reached that limit.
func checkSize(data []byte, src string) ([]byte, error) {
	if len(data) > maxPackage {
		return nil, fmt.Errorf("source %s: %w (larger than %d MiB)", src, plan9.ErrTooBig, maxPackage>>20)
	}
	return data, nil
}

// stamp is what changes when a source file does.
func (m *Manager) stamp(ctx context.Context, src string) (string, error) {
	kind, p, _ := strings.Cut(src, ":")
	switch kind {
	case "host":
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %d", fi.ModTime().UnixNano(), fi.Size()), nil
	case "ns":
		d, err := m.statNS(ctx, p)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %d %d %d", d.Qid.Path, d.Qid.Vers, d.Mtime, d.Length), nil
	}
	return "", errors.New("modules: unknown source kind")
}

// openNS walks to p in the owner's namespace and opens it.
func (m *Manager) openNS(ctx context.Context, p string, mode uint8) (styx.File, error) {
	root, err := m.nsm.Attach(ctx, m.owner, "", nil)
	if err != nil {
		return nil, err
	}
	defer root.Clunk()
	f, err := styx.WalkFile(ctx, root, styx.SplitPath(p))
	if err != nil {
		return nil, err
	}
	if mode != 255 {
		if _, err := f.Open(ctx, mode); err != nil {
			f.Clunk()
			return nil, err
		}
	}
	return f, nil
}

func (m *Manager) statNS(ctx context.Context, p string) (styx.Dir, error) {
	f, err := m.openNS(ctx, p, 255)
	if err != nil {
		return styx.Dir{}, err
	}
	defer f.Clunk()
	return f.Stat(ctx)
}

// watch starts, restarts or ends d's hot-reload watcher to suit its
// config: while hotreload is on, the source is looked at every interval
// and a change reloads the module.
func (m *Manager) watch(d *managed) {
	// The stamp to compare with is taken now, not when the watcher
	// first runs, so a change made right after this returns is seen.
	d.mu.Lock()
	src, on := d.source, d.mc.hotreload
	d.mu.Unlock()
	var last string
	if on && src != "" {
		last, _ = m.stamp(m.ctx, src)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watchStop != nil {
		d.watchStop()
		d.watchStop = nil
	}
	if !d.mc.hotreload || d.source == "" {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	d.watchStop = cancel
	src, every := d.source, d.mc.interval
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now, err := m.stamp(ctx, src)
			if err != nil || now == last {
				continue
			}
			last = now
			d.slog.Info("package file changed; reloading", "source", src)
			if err := m.Reload(ctx, d.name); err != nil {
				d.slog.Error("hot reload refused; the old version keeps running", "err", err)
				d.mu.Lock()
				d.lastErr = "hot reload refused: " + err.Error()
				d.mu.Unlock()
			}
		}
	}()
}

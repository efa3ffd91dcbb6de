package modules

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cheshire/module"
	"cheshire/plan9"
)

// Configuration: parsing and checking a module's config text, the keys
// the manager takes out of it (lazy, hotreload, mount, restart,
// maxread), and the errors a refusal wraps.

// managerConfig is the part of a module's configuration the manager
// itself acts on.
type managerConfig struct {
	lazy      bool          // start at the first operation on its files
	hotreload bool          // reload when the package file changes
	interval  time.Duration // how often the package file is looked at
	mount     string        // where live namespaces get the module mounted
	restart   string        // "never" or "on-failure"
	maxRead   int64         // most bytes a read of one file serves through one fid; 0: no limit
	failures  int           // failures in a row, for the restart back-off (not configured)
}

// managerKeys are the configuration keys the manager takes out.
var managerKeys = map[string]bool{"lazy": true, "hotreload": true, "mount": true, "restart": true, "maxread": true}

// defaultMaxRead is the read limit of a package's files unless its
// configuration sets another; built-in modules have none.
const defaultMaxRead = 64 << 20

// splitConfig separates cfg into the module's part and the manager's.
// The module's text keeps its line numbers: the manager's lines are
// left blank in it.
func splitConfig(cfg module.Config) (mod module.Config, mgr []module.ConfigEntry) {
	lines := strings.Split(cfg.Text, "\n")
	for _, e := range cfg.Entries {
		if managerKeys[e.Key] {
			mgr = append(mgr, e)
			lines[e.Line-1] = ""
		} else {
			mod.Entries = append(mod.Entries, e)
		}
	}
	mod.Text = strings.Join(lines, "\n")
	return mod, mgr
}

// ErrBadConfig is what a refused configuration's error wraps; plan9.Errno
// maps its text to EINVAL, so that a refused write to NAME/config reads
// as "Invalid argument" through FUSE.
var ErrBadConfig = plan9.Error("config refused")

// Errors whose text plan9.Errno maps to the errno a client should see:
// the C library's strerror texts.
var (
	errInvalid = plan9.ErrInvalid
	errBusy    = plan9.Error(syscall.EBUSY.Error())  // device or resource busy
	errAgain   = plan9.Error(syscall.EAGAIN.Error()) // resource temporarily unavailable
)

// badName is the error of a module name that is not a validName.
func badName(name string) error {
	return fmt.Errorf("%w: module name %q: want lower-case letters, digits, . _ - (at most 64)", errInvalid, name)
}

// checkConfig parses and validates text for mod: the manager's keys here,
// the rest by mod.CheckConfig. Its error wraps ErrBadConfig, and a
// *LineError if one line is to blame.
func (m *Manager) checkConfig(mod module.Module, text string, builtin bool) (module.Config, managerConfig, module.Config, error) {
	cfg, mc, modCfg, err := m.parseConfig(mod, text, builtin)
	if err != nil {
		return module.Config{}, mc, module.Config{}, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return cfg, mc, modCfg, nil
}

func (m *Manager) parseConfig(mod module.Module, text string, builtin bool) (module.Config, managerConfig, module.Config, error) {
	cfg, err := module.ParseConfig(text)
	if err != nil {
		return module.Config{}, managerConfig{}, module.Config{}, err
	}
	mf := mod.Manifest()
	mc := managerConfig{lazy: mf.Lazy, hotreload: true, interval: time.Second, restart: "never"}
	if !builtin {
		mc.maxRead = defaultMaxRead
	}
	modCfg, mgrEntries := splitConfig(cfg)
	for _, e := range mgrEntries {
		switch e.Key {
		case "lazy":
			if len(e.Args) != 1 || (e.Args[0] != "on" && e.Args[0] != "off") {
				return module.Config{}, mc, module.Config{}, e.Errorf("want lazy on|off")
			}
			mc.lazy = e.Args[0] == "on"
		case "hotreload":
			if len(e.Args) < 1 || len(e.Args) > 2 || (e.Args[0] != "on" && e.Args[0] != "off") {
				return module.Config{}, mc, module.Config{}, e.Errorf("want hotreload on|off [INTERVAL]")
			}
			mc.hotreload = e.Args[0] == "on"
			if len(e.Args) == 2 {
				d, err := time.ParseDuration(e.Args[1])
				if err != nil || d < 10*time.Millisecond || d > time.Hour {
					return module.Config{}, mc, module.Config{}, e.Errorf("interval %q: want a duration from 10ms to 1h", e.Args[1])
				}
				mc.interval = d
			}
		case "mount":
			if len(e.Args) != 1 || !strings.HasPrefix(e.Args[0], "/") || path.Clean(e.Args[0]) != e.Args[0] || e.Args[0] == "/" {
				return module.Config{}, mc, module.Config{}, e.Errorf("want mount /PATH (clean, absolute, not /)")
			}
			mc.mount = e.Args[0]
		case "restart":
			if len(e.Args) != 1 || (e.Args[0] != "never" && e.Args[0] != "on-failure") {
				return module.Config{}, mc, module.Config{}, e.Errorf("want restart never|on-failure")
			}
			mc.restart = e.Args[0]
		case "maxread":
			n, err := parseSize(e.Args)
			if err != nil {
				return module.Config{}, mc, module.Config{}, e.Errorf("want maxread SIZE (bytes, or with K, M or G; 0 for no limit)")
			}
			mc.maxRead = n
		}
	}
	if err := mod.CheckConfig(modCfg); err != nil {
		return module.Config{}, mc, module.Config{}, err
	}
	return cfg, mc, modCfg, nil
}

// mergeMC is the new manager config, keeping what is not configured.
func mergeMC(nc, old managerConfig) managerConfig {
	nc.failures = old.failures
	return nc
}

// parseSize parses one argument, a count of bytes with an optional K, M
// or G (binary) suffix.
func parseSize(args []string) (int64, error) {
	if len(args) != 1 || args[0] == "" {
		return 0, errors.New("modules: want one size")
	}
	a, shift := args[0], 0
	switch a[len(a)-1] {
	case 'K', 'k':
		shift = 10
	case 'M', 'm':
		shift = 20
	case 'G', 'g':
		shift = 30
	}
	if shift > 0 {
		a = a[:len(a)-1]
	}
	n, err := strconv.ParseInt(a, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, errors.New("modules: bad size")
	}
	return n << shift, nil
}

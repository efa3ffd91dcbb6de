package plan9

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

// allErrors lists every exported Error constant.
var allErrors = []Error{ErrReadOnly,
	ErrNotFound, ErrExist, ErrPerm, ErrNotDir, ErrIsDir, ErrNotEmpty,
	ErrUnknownFid, ErrDupFid, ErrDupTag, ErrBotch, ErrWalkNoDir,
	ErrFidOpen, ErrNotOpen, ErrBadOffset, ErrBadMode, ErrBadUse,
	ErrCreate, ErrRead, ErrWrite, ErrRemove, ErrWstat, ErrIO,
	ErrInterrupted, ErrTooBig, ErrBadName, ErrFileInUse, ErrNoSpace,
	ErrTimedOut, ErrUnreachable, ErrModuleStopped, ErrNotSupported,
	ErrCrossDev, ErrHungup, ErrBadCtl, ErrBadArgs, ErrEmptyCtl,
	ErrOverflow, ErrNoVersion, ErrInvalid,
}

func TestErrorConstants(t *testing.T) {
	strerror := map[Error]bool{ErrNoSpace: true, ErrIsDir: true, ErrTimedOut: true, ErrNotSupported: true, ErrCrossDev: true, ErrReadOnly: true}
	eio := map[Error]bool{ErrIO: true, ErrOverflow: true}
	seen := map[Error]bool{}
	for _, e := range allErrors {
		s := string(e)
		if seen[e] {
			t.Errorf("duplicate error string %q", s)
		}
		seen[e] = true
		if len(s) > ErrMax-1 || s == "" {
			t.Errorf("%q: length %d", s, len(s))
		}
		if !strerror[e] && s != strings.ToLower(s) {
			t.Errorf("%q is not lower case", s)
		}
		if strings.HasSuffix(s, ".") {
			t.Errorf("%q ends with a period", s)
		}
		if got := Errno(s); (got == syscall.EIO) != eio[e] {
			t.Errorf("Errno(%q) = %v", s, got)
		}
		if e.Error() != s {
			t.Errorf("Error(%q).Error() = %q", s, e.Error())
		}
	}
}

func TestErrno(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Errno
	}{
		{"file not found", syscall.ENOENT},
		{"File Not Found", syscall.ENOENT},
		{"file not found\n", syscall.ENOENT},
		{"No such file or directory", syscall.ENOENT},
		{"no such file or directory", syscall.ENOENT},
		{"directory entry not found", syscall.ENOENT},
		{"Operation not permitted", syscall.EPERM},
		{"wstat prohibited", syscall.EPERM},
		{"create prohibited", syscall.EPERM},
		{"remove prohibited", syscall.EPERM},
		{"write prohibited", syscall.EPERM},
		{"read prohibited", syscall.EPERM},
		{"Interrupted system call", syscall.EINTR},
		{"interrupted", syscall.EINTR},
		{"Input/output error", syscall.EIO},
		{"i/o error", syscall.EIO},
		{"Is a directory", syscall.EISDIR},
		{"is a directory", syscall.EISDIR},
		{"Not a directory", syscall.ENOTDIR},
		{"not a directory", syscall.ENOTDIR},
		{"walk in non-directory", syscall.ENOTDIR},
		{"File exists", syscall.EEXIST},
		{"file already exists", syscall.EEXIST},
		{"file or directory already exists", syscall.EEXIST},
		{"Permission denied", syscall.EACCES},
		{"permission denied", syscall.EACCES},
		{"not owner", syscall.EACCES},
		{"Directory not empty", syscall.ENOTEMPTY},
		{"directory is not empty", syscall.ENOTEMPTY},
		{"unknown fid", syscall.EBADF},
		{"fid unknown or out of range", syscall.EBADF},
		{"bad use of fid", syscall.EBADF},
		{"bad offset", syscall.EINVAL},
		{"file too big", syscall.EFBIG},
		{"bad character in file name", syscall.EINVAL},
		{"file in use", syscall.ETXTBSY},
		{"Connection timed out", syscall.ETIMEDOUT},
		{"connection timed out", syscall.ETIMEDOUT},
		{"remote node unreachable", syscall.EHOSTUNREACH},
		{"module stopped", syscall.ENXIO},
		{"operation not supported", syscall.EOPNOTSUPP},
		{"cross-device rename", syscall.EXDEV},
		{"No space left on device", syscall.ENOSPC},
		{"Read-only file system", syscall.EROFS},
		{"read only file system", syscall.EROFS},
		{"unknown control message", syscall.EINVAL},
		{"bad # args to command", syscall.EINVAL},
		{"empty control message", syscall.EINVAL},
		{"i/o on hungup channel", syscall.EPIPE},
		{"event overflow", syscall.EIO},
		{"protocol botch", syscall.EPROTO},
		{"Invalid argument", syscall.EINVAL},

		// Context prefixes.
		{"tmp: file not found", syscall.ENOENT},
		{"open /x: no such file or directory", syscall.ENOENT},
		{"walk: /a: b: permission denied", syscall.EACCES},
		{"wrapped: read only file system", syscall.EROFS},

		// Detail after the standard text, in either order.
		{"file not found: really", syscall.ENOENT},
		{`unknown control message "frob /a /b"`, syscall.EINVAL},
		{`line 2: unknown control message "frob"`, syscall.EINVAL},
		{"permission denied: nothing is exported to key abc", syscall.EACCES},
		{"#host.ro: permission denied: #host.ro is the node owner's", syscall.EACCES},
		{`bad # args to command "bind /a"`, syscall.EINVAL},
		{"mounted directory forbids creation", syscall.EACCES},
		{"module stopped: dns", syscall.ENXIO},
		{"remote node unreachable: abcd: dht: lookup: no record found", syscall.EHOSTUNREACH},
		{"version not negotiated", syscall.EPROTO},
		{"file not found (in zone)", syscall.ENOENT},
		{"bind: usage: bind [-abcC] new old", syscall.EINVAL},
		{"#nosuch: no such server", syscall.ENOENT},
		{"config refused: config line 1 (bogus): unknown setting", syscall.EINVAL},
		{"No such device", syscall.ENODEV},

		// Leading words of a part, then phrases within one.
		{`ca: bad serial "zz" (want hex)`, syscall.EINVAL},
		{`dns: lazy "maybe": want on or off`, syscall.EINVAL},
		{`ca: no certificate named "web"`, syscall.ENOENT},
		{"ca: ttl 90d too long (at most 30d)", syscall.EINVAL},
		{"/n/x: is busy: a process has a file open", syscall.EBUSY},
		{"ca: serial 1f is already revoked", syscall.EALREADY},
		{"ca: backup version \"9\" not supported", syscall.EOPNOTSUPP},
		{"node presented key abc, not the expected def", syscall.EACCES},
		{"key is 3, not ECDSA", syscall.EINVAL},
		{"the SOA cannot be changed here: use the zone file", syscall.EPERM},
		{"remote: read of an unopened import root", syscall.EBADF},
		{"module stopped while starting", syscall.ENXIO},
		{"notable: statement", syscall.EIO}, // "not" and "stale" only as words
		{"restless", syscall.EIO},

		// A known cause inside wins over the leading word outside.
		{"bad zone: read /z: input/output error", syscall.EIO},
		{"no zone: open /z: permission denied", syscall.EACCES},

		// Unknown.
		{"", syscall.EIO},
		{"something odd", syscall.EIO},
		{"x: something odd", syscall.EIO},
		{"file notfound", syscall.EIO},
	}
	for _, tt := range tests {
		if got := Errno(tt.in); got != tt.want {
			t.Errorf("Errno(%q) = %v (%d), want %v (%d)", tt.in, got, got, tt.want, tt.want)
		}
	}
}

// TestErrnoTableConsistent checks that no string in ninepErrnos is
// listed twice, even in another case, with a different errno.
func TestErrnoTableConsistent(t *testing.T) {
	seen := map[string]syscall.Errno{}
	for _, x := range ninepErrnos() {
		k := strings.ToLower(x.s)
		if e, ok := seen[k]; ok && e != x.e {
			t.Errorf("%q maps to both %v and %v", x.s, e, x.e)
		}
		seen[k] = x.e
	}
}

func TestErrorsIs(t *testing.T) {
	err := fmt.Errorf("x: %w", ErrNotFound)
	if !errors.Is(err, ErrNotFound) {
		t.Error("errors.Is(wrapped ErrNotFound, ErrNotFound) = false")
	}
	if errors.Is(err, ErrExist) {
		t.Error("errors.Is(wrapped ErrNotFound, ErrExist) = true")
	}
	var pe Error
	if !errors.As(err, &pe) || pe != ErrNotFound {
		t.Errorf("errors.As = %q", pe)
	}
	if got := Errno(err.Error()); got != syscall.ENOENT {
		t.Errorf("Errno(%q) = %v", err.Error(), got)
	}
}

func TestErrstr(t *testing.T) {
	long := strings.Repeat("a", 200)
	words := "remote node unreachable: " + strings.Repeat("xdxh ", 30) + "dht: lookup: no record found"
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrNotFound, "file not found"},
		{errors.New(long[:127]), long[:127]},
		{errors.New(long[:128]), long[:49] + "…" + long[:75]},
		// Detail goes from the middle, cut between words.
		{errors.New(words), "remote node unreachable: xdxh xdxh xdxh xdxh …xdxh xdxh xdxh xdxh xdxh xdxh xdxh xdxh xdxh xdxh dht: lookup: no record found"},
	}
	for _, tt := range tests {
		got := Errstr(tt.err)
		if got != tt.want {
			t.Errorf("Errstr(%v) =\n%q (%d bytes), want\n%q", tt.err, got, len(got), tt.want)
		}
		if len(got) > ErrMax-1 {
			t.Errorf("Errstr gave %d bytes", len(got))
		}
	}
	// Any length, any characters: valid UTF-8 of at most ErrMax-1 bytes
	// that keeps the start and end characters.
	for n := 100; n < 400; n++ {
		for _, s := range []string{
			strings.Repeat("é", n/2) + strings.Repeat("x", n%2),
			strings.Repeat("𝄞 ", n/5),
			"a" + strings.Repeat("\x80", n) + "z",
		} {
			got := Errstr(errors.New(s))
			if utf8.ValidString(s) && !utf8.ValidString(got) || len(got) > ErrMax-1 {
				t.Errorf("Errstr of %d bytes gave %q (%d bytes)", len(s), got, len(got))
			}
			if len(s) > ErrMax-1 && (got[0] != s[0] || got[len(got)-1] != s[len(s)-1]) {
				t.Errorf("Errstr of %q lost its ends: %q", s, got)
			}
		}
	}
}

func TestErrorFor(t *testing.T) {
	tests := []struct {
		in   syscall.Errno
		want Error
	}{
		{syscall.ENOENT, ErrNotFound},
		{syscall.EEXIST, ErrExist},
		{syscall.EACCES, ErrPerm},
		{syscall.EPERM, ErrPerm},
		{syscall.ENOTDIR, ErrNotDir},
		{syscall.EISDIR, ErrIsDir},
		{syscall.ENOTEMPTY, ErrNotEmpty},
		{syscall.EXDEV, ErrCrossDev},
		{syscall.ENOSPC, ErrNoSpace},
		{syscall.EIO, ErrIO},
		{syscall.EFBIG, ErrTooBig},
		{syscall.ETXTBSY, ErrFileInUse},
		{syscall.EROFS, "Read-only file system"},
		{syscall.EINVAL, "Invalid argument"},
		{syscall.ETIMEDOUT, "Connection timed out"},
	}
	for _, tt := range tests {
		if got := ErrorFor(tt.in); got != tt.want {
			t.Errorf("ErrorFor(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Every errno the syscall package names survives the round trip,
	// except those ErrorFor deliberately merges.
	merged := map[syscall.Errno]bool{syscall.EPERM: true, syscall.EBUSY: true}
	for e := syscall.Errno(1); e <= maxErrno; e++ {
		if merged[e] || strings.HasPrefix(e.Error(), "errno ") {
			continue
		}
		s := ErrorFor(e)
		if got := Errno(string(s)); got != e && got.Error() != e.Error() {
			t.Errorf("Errno(ErrorFor(%d)) = Errno(%q) = %d", e, s, got)
		}
	}
}

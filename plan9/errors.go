package plan9

import (
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

// Error is a Plan 9 error string, as carried by an Rerror message.
type Error string

func (e Error) Error() string { return string(e) }

// The standard error strings. Most use the wording of Plan 9's lib9p.
// Where lib9p's text is not in the Linux kernel's table (net/9p/error.c)
// and a file operation a v9fs user sees would return it, the C library's
// text is used instead, so that v9fs gives the right errno rather than
// ESERVERFAULT: ErrIsDir, ErrNoSpace, ErrTimedOut, ErrNotSupported,
// ErrCrossDev, ErrReadOnly.
const (
	ErrNotFound      Error = "file not found"
	ErrExist         Error = "file already exists"
	ErrPerm          Error = "permission denied"
	ErrNotDir        Error = "not a directory"
	ErrIsDir         Error = "Is a directory"
	ErrNotEmpty      Error = "directory is not empty"
	ErrUnknownFid    Error = "unknown fid"
	ErrDupFid        Error = "duplicate fid"
	ErrDupTag        Error = "duplicate tag"
	ErrBotch         Error = "protocol botch"
	ErrWalkNoDir     Error = "walk in non-directory"
	ErrFidOpen       Error = "fid already open"
	ErrNotOpen       Error = "fid not open"
	ErrBadOffset     Error = "bad offset"
	ErrBadMode       Error = "bad open mode"
	ErrBadUse        Error = "bad use of fid"
	ErrCreate        Error = "create prohibited"
	ErrRead          Error = "read prohibited"
	ErrWrite         Error = "write prohibited"
	ErrRemove        Error = "remove prohibited"
	ErrWstat         Error = "wstat prohibited"
	ErrConvert       Error = "wstat can't convert between files and directories" // fossil's; EPERM
	ErrIO            Error = "i/o error"
	ErrInterrupted   Error = "interrupted"
	ErrTooBig        Error = "file too big"
	ErrBadName       Error = "bad character in file name"
	ErrFileInUse     Error = "file in use"
	ErrNoSpace       Error = "No space left on device"
	ErrTimedOut      Error = "Connection timed out"
	ErrUnreachable   Error = "remote node unreachable"
	ErrModuleStopped Error = "module stopped"
	ErrNotSupported  Error = "Operation not supported"
	ErrCrossDev      Error = "Invalid cross-device link"
	ErrReadOnly      Error = "Read-only file system"
	ErrHungup        Error = "i/o on hungup channel"
	ErrBadCtl        Error = "unknown control message"
	ErrBadArgs       Error = "bad # args to command"
	ErrEmptyCtl      Error = "empty control message"
	ErrOverflow      Error = "event overflow"
	ErrNoVersion     Error = "version not negotiated"
	ErrInvalid       Error = "invalid argument" // a bad value written to a file; EINVAL
)

// ErrMax is the size of a Plan 9 error buffer (ERRMAX), terminating
// NUL included: an error string holds at most ErrMax-1 bytes.
const ErrMax = 128

// Errstr returns the text of err in at most ErrMax-1 bytes. A longer
// text loses detail from its middle, marked by "…", not from its end:
// the head names the operation and often a standard error, the tail
// the cause. Cuts fall between words where one is near, and never split
// a UTF-8 sequence. A nil err gives "".
func Errstr(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	n := ErrMax - 1
	if len(s) <= n {
		return s
	}
	const mark = "…"
	room := n - len(mark)
	head := cutAt(s, room*2/5, true)
	tail := cutAt(s, room-len(head), false)
	return head + mark + tail
}

// cutAt returns the first (or, if !front, last) at most n bytes of s,
// ending (starting) at a word boundary within the last (first) 12 bytes
// of the cut if there is one, and never inside a UTF-8 sequence.
func cutAt(s string, n int, front bool) string {
	const slack = 12
	// Move over the continuation bytes of a character cut in two, but
	// no further than one character's worth: invalid UTF-8 is cut where
	// it stands.
	if front {
		i := n
		for k := 0; k < utf8.UTFMax-1 && i > 0 && !utf8.RuneStart(s[i]); k++ {
			i--
		}
		if !utf8.RuneStart(s[i]) {
			i = n
		}
		if j := strings.LastIndexByte(s[:i], ' '); j >= i-slack && j > 0 {
			i = j + 1
		}
		return s[:i]
	}
	i := len(s) - n
	for k := 0; k < utf8.UTFMax-1 && i < len(s)-1 && !utf8.RuneStart(s[i]); k++ {
		i++
	}
	if !utf8.RuneStart(s[i]) {
		i = len(s) - n
	}
	if j := strings.IndexByte(s[i:], ' '); j >= 0 && j < slack {
		i += j + 1
	}
	return s[i:]
}

// errnoEntry pairs an error string with the errno it stands for.
type errnoEntry struct {
	s string
	e syscall.Errno
}

// ninepErrnos lists the 9P error strings that are not C library
// strerror texts. The first part reproduces, in order, the fossil,
// vacfs and u9fs entries of the Linux kernel's net/9p/error.c (less
// the two "no authentication required" non-errors); the kernel's
// strerror entries are covered by strerrorEntries. The rest are
// lib9p's strings and cheshire's own.
func ninepErrnos() []errnoEntry {
	return []errnoEntry{
		// Linux net/9p/error.c: errors from fossil, vacfs and u9fs.
		{"fid unknown or out of range", syscall.EBADF},
		{"permission denied", syscall.EACCES},
		{"file does not exist", syscall.ENOENT},
		{"authentication failed", syscall.ECONNREFUSED},
		{"bad offset in directory read", syscall.ESPIPE},
		{"bad use of fid", syscall.EBADF},
		{"wstat can't convert between files and directories", syscall.EPERM},
		{"directory is not empty", syscall.ENOTEMPTY},
		{"file exists", syscall.EEXIST},
		{"file already exists", syscall.EEXIST},
		{"file or directory already exists", syscall.EEXIST},
		{"fid already in use", syscall.EBADF},
		{"file in use", syscall.ETXTBSY},
		{"i/o error", syscall.EIO},
		{"file already open for I/O", syscall.ETXTBSY},
		{"illegal mode", syscall.EINVAL},
		{"illegal name", syscall.ENAMETOOLONG},
		{"not a directory", syscall.ENOTDIR},
		{"not a member of proposed group", syscall.EPERM},
		{"not owner", syscall.EACCES},
		{"only owner can change group in wstat", syscall.EACCES},
		{"read only file system", syscall.EROFS},
		{"no access to special file", syscall.EPERM},
		{"i/o count too large", syscall.EIO},
		{"unknown group", syscall.EINVAL},
		{"unknown user", syscall.EINVAL},
		{"bogus wstat buffer", syscall.EPROTO},
		{"exclusive use file already open", syscall.EAGAIN},
		{"corrupted directory entry", syscall.EIO},
		{"corrupted file entry", syscall.EIO},
		{"corrupted block label", syscall.EIO},
		{"corrupted meta data", syscall.EIO},
		{"illegal offset", syscall.EINVAL},
		{"illegal path element", syscall.ENOENT},
		{"root of file system is corrupted", syscall.EIO},
		{"corrupted super block", syscall.EIO},
		{"protocol botch", syscall.EPROTO},
		{"file system is full", syscall.ENOSPC},
		{"file is in use", syscall.EAGAIN},
		{"directory entry is not allocated", syscall.ENOENT},
		{"file is read only", syscall.EROFS},
		{"file has been removed", syscall.EIDRM},
		{"only support truncation to zero length", syscall.EPERM},
		{"cannot remove root", syscall.EPERM},
		{"file too big", syscall.EFBIG},
		{"venti i/o error", syscall.EIO},
		// Linux net/9p/error.c, among its strerror entries.
		{"wstat prohibited", syscall.EPERM},
		{"directory entry not found", syscall.ENOENT},
		{"file not found", syscall.ENOENT},

		// Plan 9 lib9p.
		{"unknown specifier in attach", syscall.EINVAL},
		{"bad count", syscall.EINVAL},
		{"9P protocol botch", syscall.EPROTO},
		{"create in non-directory", syscall.ENOTDIR},
		{"duplicate fid", syscall.EBADF},
		{"duplicate tag", syscall.EPROTO},
		{"is a directory", syscall.EISDIR},
		{"create prohibited", syscall.EPERM},
		{"out of memory", syscall.ENOMEM},
		{"remove prohibited", syscall.EPERM},
		{"stat prohibited", syscall.EPERM},
		{"write prohibited", syscall.EPERM},
		{"unknown fid", syscall.EBADF},
		{"bad directory in wstat", syscall.EINVAL},
		{"walk in non-directory", syscall.ENOTDIR},

		// Plan 9 kernel and cheshire.
		{"file is a directory", syscall.EISDIR},
		{"fid already open", syscall.EBADF},
		{"fid not open", syscall.EBADF},
		{"bad offset", syscall.EINVAL},
		{"bad open mode", syscall.EINVAL},
		{"read prohibited", syscall.EPERM},
		{"interrupted", syscall.EINTR},
		{"bad character in file name", syscall.EINVAL},
		{"connection timed out", syscall.ETIMEDOUT},
		{"remote node unreachable", syscall.EHOSTUNREACH},
		{"module stopped", syscall.ENXIO},
		{"operation not supported", syscall.EOPNOTSUPP},
		{"cross-device rename", syscall.EXDEV},
		{"i/o on hungup channel", syscall.EPIPE},
		{"unknown control message", syscall.EINVAL},
		{"bad # args to command", syscall.EINVAL},
		{"empty control message", syscall.EINVAL},
		{"event overflow", syscall.EIO},
		{"version not negotiated", syscall.EPROTO},
		{"mounted directory forbids creation", syscall.EACCES},
		{"usage", syscall.EINVAL}, // "bind: usage: bind [-abcC] new old"
		{"authentication not required", syscall.EOPNOTSUPP},
		{"cannot walk an open fid", syscall.EBADF},
		{"read count too small for a directory entry", syscall.EINVAL},
		{"config refused", syscall.EINVAL},
		{"no such", syscall.ENOENT},        // as a prefix: no such server, zone, module...
		{"no quorum", syscall.EAGAIN},      // the raft group has no leader a majority follows: try again
		{"lock held by", syscall.EAGAIN},   // locks: a no-wait try of a held lock (EWOULDBLOCK)
		{"not the leader", syscall.EAGAIN}, // raftgroup: asked a node that no longer leads
		{"insufficient funds", syscall.EINVAL},

		// Leading words of cheshire's own messages, matched as a part's
		// prefix when nothing more specific matched: a refused value
		// ("bad serial", "want on or off", "unknown setting") is EINVAL,
		// a missing thing ("no certificate named x") ENOENT.
		{"bad", syscall.EINVAL},
		{"want", syscall.EINVAL},
		{"wants", syscall.EINVAL},
		{"invalid", syscall.EINVAL},
		{"malformed", syscall.EINVAL},
		{"missing", syscall.EINVAL},
		{"empty", syscall.EINVAL},
		{"unexpected", syscall.EINVAL},
		{"unknown", syscall.EINVAL},
		{"unsupported", syscall.EINVAL},
		{"unterminated", syscall.EINVAL},
		{"control character", syscall.EINVAL},
		{"too many", syscall.EINVAL},
		{"more than", syscall.EINVAL},
		{"duplicate", syscall.EINVAL},
		{"line", syscall.EINVAL},        // "line 3: want SERIAL TIME REASON"
		{"config line", syscall.EINVAL}, // a refused line of a config file
		{"manifest line", syscall.EINVAL},
		{"dial string", syscall.EINVAL},
		{"not a", syscall.EINVAL},
		{"not an", syscall.EINVAL},
		{"not valid", syscall.EINVAL},
		{"no", syscall.ENOENT},
		{"nothing", syscall.ENOENT},
		{"not exported", syscall.EACCES},
		{"not mounted", syscall.EINVAL}, // as umount(2) says
		{"not supported", syscall.EOPNOTSUPP},
		{"already", syscall.EEXIST},
		{"exists", syscall.EEXIST},
		{"is busy", syscall.EBUSY},
		{"too long", syscall.ENAMETOOLONG},
		{"value too big", syscall.ERANGE},
		{"budget exceeded", syscall.EDQUOT},
		{"cpu budget exceeded", syscall.EDQUOT},
		{"signature does not verify", syscall.EBADMSG},
		{"connection lost", syscall.ECONNRESET},
		{"server closed", syscall.ECONNRESET},
		{"the node is shutting down", syscall.ESHUTDOWN},
		{"No space left on device", syscall.ENOSPC},
		{"Read-only file system", syscall.EROFS},
	}
}

// errnoPhrases are phrases of cheshire's messages that name their
// errno wherever they stand in a part ("ca: ttl 90d too long (at most
// 30d)", "x: is busy: …"). They are tried last, after whole texts and
// prefixes, so a known cause or leading word always wins.
func errnoPhrases() []errnoEntry {
	return []errnoEntry{
		{"presented", syscall.EACCES}, // "node presented key x, not the expected y"
		{"unsigned", syscall.EACCES},
		{"node's own", syscall.EPERM},
		{"namespaces only", syscall.EOPNOTSUPP},
		{"server speaks", syscall.EPROTO},
		{"server offered", syscall.EPROTO},
		{"node answered", syscall.EPROTO},
		{"entries in the answer", syscall.EPROTO},
		{"trailing bytes", syscall.EPROTO},
		{"exceeds msize", syscall.EMSGSIZE},
		{"unopened", syscall.EBADF},
		{"truncated", syscall.EBADMSG},  // "git: truncated request"
		{"not our ref", syscall.ENOENT}, // git's words for a want it does not have
		{"mutually exclusive", syscall.EINVAL},
		{"exclude each other", syscall.EINVAL},
		{"not supported", syscall.EOPNOTSUPP},
		{"not allowed", syscall.EPERM},
		{"cannot be", syscall.EPERM}, // "the SOA cannot be deleted"
		{"not trusted", syscall.EACCES},
		{"readable by others", syscall.EACCES},
		{"wrong passphrase", syscall.EACCES},
		{"does not verify", syscall.EBADMSG},
		{"does not match", syscall.EINVAL},
		{"is not a directory", syscall.ENOTDIR},
		{"is not a mount point", syscall.EINVAL},
		{"is not mounted", syscall.EINVAL},
		{"already a mount point", syscall.EBUSY},
		{"is busy", syscall.EBUSY},
		{"still running", syscall.EBUSY},
		{"still in hand", syscall.EBUSY},
		{"already", syscall.EALREADY}, // "serial 1f is already revoked"
		{"exists", syscall.EEXIST},
		{"has expired", syscall.EKEYEXPIRED},
		{"too short", syscall.EINVAL},
		{"too long", syscall.EINVAL},
		{"too weak", syscall.EINVAL},
		{"too large", syscall.EFBIG},
		{"larger than", syscall.EFBIG},
		{"longer than", syscall.EINVAL},
		{"more than", syscall.EINVAL},
		{"shorter than", syscall.EINVAL},
		{"at most", syscall.EINVAL},
		{"out of range", syscall.ERANGE},
		{"must be", syscall.EINVAL}, // "path must be absolute"
		{"must both be", syscall.EINVAL},
		{"is a union", syscall.EINVAL},
		{"has no", syscall.EINVAL}, // "manifest has no wasm line"
		{"without", syscall.EINVAL},
		{"outside a batch", syscall.EINVAL},
		{"first", syscall.EINVAL}, // "write a certificate request first"
		{"missing", syscall.ENOENT},
		{", not", syscall.EINVAL}, // "package is module x, not y"
		{"not absolute", syscall.EINVAL},
		{"is not", syscall.EINVAL}, // "key is not in canonical z-base-32"
		{"want", syscall.EINVAL},   // "key of 7 bytes, want 32"
		{"wants", syscall.EINVAL},
		{"needs", syscall.EINVAL},
		{"outside memory", syscall.EFAULT},
		{"not started within", syscall.ETIMEDOUT},
		{"closed", syscall.EPIPE}, // "import closed"
		{"forged", syscall.EBADMSG},
		{"stale", syscall.ESTALE},
		{"quota exceeded", syscall.EDQUOT}, // "store: quota exceeded for key x (...)"
	}
}

// maxErrno bounds the errno values whose strerror texts are indexed.
const maxErrno = 255

// errnoTable maps lower-cased error strings to errno values: the 9P
// strings of ninepErrnos, then the strerror text of every errno the
// syscall package names. The first entry for a string wins.
var errnoTable = sync.OnceValue(func() map[string]syscall.Errno {
	entries := ninepErrnos()
	m := make(map[string]syscall.Errno, len(entries)+maxErrno)
	for _, x := range entries {
		k := strings.ToLower(x.s)
		if _, ok := m[k]; !ok {
			m[k] = x.e
		}
	}
	for e := syscall.Errno(1); e <= maxErrno; e++ {
		k := strings.ToLower(e.Error())
		if strings.HasPrefix(k, "errno ") {
			continue
		}
		if _, ok := m[k]; !ok {
			m[k] = e
		}
	}
	return m
})

// Errno maps a 9P error string to the closest errno value. Strings
// are compared without regard to case, both the 9P strings that the
// Linux kernel's net/9p/error.c knows (plus lib9p's and cheshire's)
// and the C library's strerror texts. An error wrapped with context
// ("walk /x: file not found") or wrapping detail ("permission denied:
// nothing is exported", `unknown control message "frob"`) is mapped by
// the known text in it: errstr as a whole, else each of its ": "
// separated parts, innermost (last) first, as a whole, else each part's
// longest known prefix followed by a space, quote or parenthesis, else
// the first phrase of errnoPhrases that it holds. Anything else is EIO.
func Errno(errstr string) syscall.Errno {
	m := errnoTable()
	key := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	if e, ok := m[key(errstr)]; ok {
		return e
	}
	parts := strings.Split(errstr, ": ")
	for i := len(parts) - 1; i >= 0; i-- {
		if e, ok := m[key(strings.Join(parts[i:], ": "))]; ok {
			return e
		}
		if e, ok := m[key(parts[i])]; ok {
			return e
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		for j := len(p) - 1; j > 0; j-- {
			if c := p[j]; c != ' ' && c != '"' && c != '(' && c != '\'' {
				continue
			}
			if e, ok := m[key(p[:j])]; ok {
				return e
			}
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := " " + key(parts[i]) + " "
		for _, x := range errnoPhrases() {
			j := strings.Index(p, x.s)
			if j > 0 && (isWordEdge(p[j-1]) || isWordEdge(x.s[0])) && isWordEdge(p[j+len(x.s)]) {
				return x.e
			}
		}
	}
	return syscall.EIO
}

// isWordEdge reports whether c may stand next to a phrase of
// errnoPhrases: anything but a letter or digit.
func isWordEdge(c byte) bool {
	return !('a' <= c && c <= 'z' || '0' <= c && c <= '9')
}

// ErrorFor maps an errno value to a 9P error string: one of the
// constants above for the common cases, otherwise the C library's
// strerror text (capitalised, as the Linux kernel's 9P client expects
// it), such as "Invalid argument".
func ErrorFor(errno syscall.Errno) Error {
	switch errno {
	case syscall.ENOENT:
		return ErrNotFound
	case syscall.EEXIST:
		return ErrExist
	case syscall.EACCES, syscall.EPERM:
		return ErrPerm
	case syscall.ENOTDIR:
		return ErrNotDir
	case syscall.EISDIR:
		return ErrIsDir
	case syscall.ENOTEMPTY:
		return ErrNotEmpty
	case syscall.EXDEV:
		return ErrCrossDev
	case syscall.ENOSPC:
		return ErrNoSpace
	case syscall.EIO:
		return ErrIO
	case syscall.EFBIG:
		return ErrTooBig
	case syscall.ETXTBSY, syscall.EBUSY:
		return ErrFileInUse
	}
	s := errno.Error()
	r, n := utf8.DecodeRuneInString(s)
	if 'a' <= r && r <= 'z' {
		s = string(r-'a'+'A') + s[n:]
	}
	return Error(s)
}

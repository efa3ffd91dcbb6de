package plan9

// Mode bits of a 9P directory entry (the high bits of Dir.Mode).
const (
	DMDIR    = 0x80000000 // directory
	DMAPPEND = 0x40000000 // append only
	DMEXCL   = 0x20000000 // exclusive use
	DMMOUNT  = 0x10000000 // mounted channel
	DMAUTH   = 0x08000000 // authentication file
	DMTMP    = 0x04000000 // not to be backed up
)

// Open modes of Topen and Tcreate.
const (
	OREAD   = 0    // read
	OWRITE  = 1    // write
	ORDWR   = 2    // read and write
	OEXEC   = 3    // execute (read permission with exec)
	OTRUNC  = 0x10 // truncate; needs write permission
	ORCLOSE = 0x40 // remove on clunk
)

// Qid types (the high byte of the mode, Qid.Type).
const (
	QTDIR    = 0x80
	QTAPPEND = 0x40
	QTEXCL   = 0x20
	QTMOUNT  = 0x10
	QTAUTH   = 0x08
	QTTMP    = 0x04
	QTFILE   = 0x00
)

// PermString formats mode as Plan 9's ls -l does (the %M format): 11
// characters, the first d for a directory, a for append-only, A for
// an authentication file and - otherwise, the second l for exclusive
// use and - otherwise, then the owner, group and other rwx triplets:
// d-rwxr-xr-x, a-rw-r--r--, -lrw-------, --rw-r--r--.
func PermString(mode uint32) string {
	var b [11]byte
	switch {
	case mode&DMDIR != 0:
		b[0] = 'd'
	case mode&DMAPPEND != 0:
		b[0] = 'a'
	case mode&DMAUTH != 0:
		b[0] = 'A'
	default:
		b[0] = '-'
	}
	b[1] = '-'
	if mode&DMEXCL != 0 {
		b[1] = 'l'
	}
	const rwx = "rwx"
	for i := range 9 {
		b[2+i] = '-'
		if mode&(1<<(8-i)) != 0 {
			b[2+i] = rwx[i%3]
		}
	}
	return string(b[:])
}

// Allowed reports whether user may open a file with permission bits
// mode, owned by owner and group, in open mode want (OREAD, OWRITE,
// ORDWR or OEXEC, possibly with OTRUNC, which needs write permission;
// ORCLOSE is not checked here, as it concerns the directory). As in
// lib9p, the other bits apply to everyone, the owner bits as well if
// user is owner, and the group bits as well if user is group or
// memberOf(user, group) says so; access is allowed when the needed
// bits (read 4, write 2, exec 1) are all present among the
// applicable classes. memberOf may be nil.
func Allowed(mode uint32, owner, group, user string, memberOf func(user, group string) bool, want uint8) bool {
	var need uint32
	switch want & 3 {
	case OREAD:
		need = 4
	case OWRITE:
		need = 2
	case ORDWR:
		need = 6
	case OEXEC:
		need = 1
	}
	if want&OTRUNC != 0 {
		need |= 2
	}
	have := mode & 7
	if have&need == need {
		return true
	}
	if user == owner {
		have |= mode >> 6 & 7
		if have&need == need {
			return true
		}
	}
	if user == group || (memberOf != nil && memberOf(user, group)) {
		have |= mode >> 3 & 7
		if have&need == need {
			return true
		}
	}
	return false
}

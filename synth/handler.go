// Files and their handlers: a File is a node whose content a Handler
// serves, one Handle per open.

package synth

import "context"

// A File is a file whose behaviour is given by its Handler.
type File struct {
	node
	h Handler
}

// NewFile returns a file with permission bits perm (and DMAPPEND, DMEXCL,
// DMTMP) served by h.
func NewFile(name string, perm uint32, h Handler) *File {
	f := &File{h: h}
	f.name = name
	f.mode = perm & modeBits
	return f
}

// Handler returns the file's handler.
func (f *File) Handler() Handler { return f.h }

// A Handler gives a File its behaviour. Each open of the file (each fid)
// gets its own Handle, so per-fid state lives there.
//
// A Handler may also have the methods
//
//	Length(ctx context.Context) int64
//	Truncate(ctx context.Context, size int64) error
//
//	Version(ctx context.Context) uint32
//
// Length gives the stat length (0 without it): files whose content is
// known must give its exact length, as Linux v9fs trusts it. Truncate
// allows changing the length by wstat; without it that fails with
// "permission denied". Version, for generated content, is a number that
// changes when the content does (a hash of it, say); stat mixes it into
// qid.vers, so that clients caching by version (FUSE's page cache) see
// a status whose text changed but not its length as changed.
type Handler interface {
	// Open opens the file in mode (OREAD..OEXEC with OTRUNC). synth has
	// checked permissions. The error is the reply to Topen.
	Open(ctx context.Context, mode uint8) (Handle, error)
}

// A Handle is one open of a File. Read and Write may be called
// concurrently (pipelined requests); Close is called once, after the last.
type Handle interface {
	// Read reads at off into p; 0 bytes and a nil error (or io.EOF) is
	// end of file.
	Read(ctx context.Context, p []byte, off int64) (int, error)
	// Write writes p at off and returns the count accepted.
	Write(ctx context.Context, p []byte, off int64) (int, error)
	// Close ends the open at clunk; its error is the Tclunk's reply, so
	// a file that commits at clunk can refuse what was written.
	Close(ctx context.Context) error
}

// lengther and truncater are the optional methods of a Handler.
type lengther interface {
	Length(ctx context.Context) int64
}

// versioner is the optional Version method of a Handler.
type versioner interface {
	Version(ctx context.Context) uint32
}

// contentStater is a Handler of generated content that gives its
// Length and Version from one rendering of it, where calling both would
// render it twice.
type contentStater interface {
	contentStat(ctx context.Context) (length int64, vers uint32)
}

type truncater interface {
	Truncate(ctx context.Context, size int64) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, mode uint8) (Handle, error)

// Open calls h.
func (h HandlerFunc) Open(ctx context.Context, mode uint8) (Handle, error) { return h(ctx, mode) }

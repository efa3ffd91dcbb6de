package plan9

import (
	"syscall"
	"testing"
)

// TestErrnoKernelStrerror checks the C library strings of the Linux
// kernel's net/9p/error.c table, which Errno finds through the
// syscall package's strerror texts.
func TestErrnoKernelStrerror(t *testing.T) {
	table := []struct {
		s string
		e syscall.Errno
	}{
		{"Operation not permitted", syscall.EPERM},
		{"No such file or directory", syscall.ENOENT},
		{"Interrupted system call", syscall.EINTR},
		{"Input/output error", syscall.EIO},
		{"No such device or address", syscall.ENXIO},
		{"Argument list too long", syscall.E2BIG},
		{"Bad file descriptor", syscall.EBADF},
		{"Resource temporarily unavailable", syscall.EAGAIN},
		{"Cannot allocate memory", syscall.ENOMEM},
		{"Permission denied", syscall.EACCES},
		{"Bad address", syscall.EFAULT},
		{"Block device required", syscall.ENOTBLK},
		{"Device or resource busy", syscall.EBUSY},
		{"File exists", syscall.EEXIST},
		{"Invalid cross-device link", syscall.EXDEV},
		{"No such device", syscall.ENODEV},
		{"Not a directory", syscall.ENOTDIR},
		{"Is a directory", syscall.EISDIR},
		{"Invalid argument", syscall.EINVAL},
		{"Too many open files in system", syscall.ENFILE},
		{"Too many open files", syscall.EMFILE},
		{"Text file busy", syscall.ETXTBSY},
		{"File too large", syscall.EFBIG},
		{"No space left on device", syscall.ENOSPC},
		{"Illegal seek", syscall.ESPIPE},
		{"Read-only file system", syscall.EROFS},
		{"Too many links", syscall.EMLINK},
		{"Broken pipe", syscall.EPIPE},
		{"Numerical argument out of domain", syscall.EDOM},
		{"Numerical result out of range", syscall.ERANGE},
		{"Resource deadlock avoided", syscall.EDEADLK},
		{"File name too long", syscall.ENAMETOOLONG},
		{"No locks available", syscall.ENOLCK},
		{"Function not implemented", syscall.ENOSYS},
		{"Directory not empty", syscall.ENOTEMPTY},
		{"Too many levels of symbolic links", syscall.ELOOP},
		{"No message of desired type", syscall.ENOMSG},
		{"Identifier removed", syscall.EIDRM},
		{"No data available", syscall.ENODATA},
		{"Machine is not on the network", syscall.ENONET},
		{"Package not installed", syscall.ENOPKG},
		{"Object is remote", syscall.EREMOTE},
		{"Link has been severed", syscall.ENOLINK},
		{"Communication error on send", syscall.ECOMM},
		{"Protocol error", syscall.EPROTO},
		{"Bad message", syscall.EBADMSG},
		{"File descriptor in bad state", syscall.EBADFD},
		{"Streams pipe error", syscall.ESTRPIPE},
		{"Too many users", syscall.EUSERS},
		{"Socket operation on non-socket", syscall.ENOTSOCK},
		{"Message too long", syscall.EMSGSIZE},
		{"Protocol not available", syscall.ENOPROTOOPT},
		{"Protocol not supported", syscall.EPROTONOSUPPORT},
		{"Socket type not supported", syscall.ESOCKTNOSUPPORT},
		{"Operation not supported", syscall.EOPNOTSUPP},
		{"Protocol family not supported", syscall.EPFNOSUPPORT},
		{"Network is down", syscall.ENETDOWN},
		{"Network is unreachable", syscall.ENETUNREACH},
		{"Network dropped connection on reset", syscall.ENETRESET},
		{"Software caused connection abort", syscall.ECONNABORTED},
		{"Connection reset by peer", syscall.ECONNRESET},
		{"No buffer space available", syscall.ENOBUFS},
		{"Transport endpoint is already connected", syscall.EISCONN},
		{"Transport endpoint is not connected", syscall.ENOTCONN},
		{"Cannot send after transport endpoint shutdown", syscall.ESHUTDOWN},
		{"Connection timed out", syscall.ETIMEDOUT},
		{"Connection refused", syscall.ECONNREFUSED},
		{"Host is down", syscall.EHOSTDOWN},
		{"No route to host", syscall.EHOSTUNREACH},
		{"Operation already in progress", syscall.EALREADY},
		{"Operation now in progress", syscall.EINPROGRESS},
		{"Is a named type file", syscall.EISNAM},
		{"Remote I/O error", syscall.EREMOTEIO},
		{"Disk quota exceeded", syscall.EDQUOT},
	}
	explicit := map[syscall.Errno]bool{
		syscall.ENOENT: true, syscall.EEXIST: true, syscall.EACCES: true,
		syscall.EPERM: true, syscall.ENOTDIR: true, syscall.EISDIR: true,
		syscall.ENOTEMPTY: true, syscall.EXDEV: true, syscall.ENOSPC: true,
		syscall.EIO: true, syscall.EFBIG: true, syscall.ETXTBSY: true,
		syscall.EBUSY: true,
	}
	for _, x := range table {
		if got := Errno(x.s); got != x.e {
			t.Errorf("Errno(%q) = %v (%d), want %v (%d)", x.s, got, got, x.e, x.e)
		}
		// ErrorFor's default text is exactly what the kernel expects.
		if s := ErrorFor(x.e); !explicit[x.e] && s != Error(x.s) {
			t.Errorf("ErrorFor(%d) = %q, want %q", x.e, s, x.s)
		}
	}
}

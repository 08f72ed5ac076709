//go:build linux && (amd64 || arm64)

package pagereader

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatat is fstatat(2) of a NUL-terminated path relative to dirfd. Unlike
// unix.Fstatat it does not copy the path into a new C string on every call.
func fstatat(dirfd int, path []byte, st *unix.Stat_t) error {
	_, _, e := unix.Syscall6(sysFstatat, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(st)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

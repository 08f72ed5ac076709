//go:build !(linux && (amd64 || arm64))

package pagereader

import "golang.org/x/sys/unix"

// fstatat is fstatat(2) of a NUL-terminated path relative to dirfd.
func fstatat(dirfd int, path []byte, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, string(path[:len(path)-1]), st, 0)
}

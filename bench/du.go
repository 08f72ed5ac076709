package main

import (
	"io/fs"
	"syscall"
)

// allocated is the bytes a file takes on disk (its 512-byte blocks).
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

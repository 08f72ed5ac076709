//go:build !linux

package respond

import "syscall"

// cork is Linux's TCP_CORK; elsewhere nothing is held back.
func cork(syscall.RawConn) int { return -1 }

func uncork(int) {}

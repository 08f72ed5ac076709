//go:build !unix

package svc

// RestrictUmask does nothing where there is no umask.
func RestrictUmask() {}

//go:build unix

package svc

import "syscall"

// RestrictUmask makes what the process creates readable by its group and
// no one else (folders 0750, files 0640 where the code asks for 0755 and
// 0644). The writer and the stack call it first: the api reads DATA_DIR
// as a member of the writer's group (65532 in the images and manifests).
func RestrictUmask() { syscall.Umask(0o027) }

//go:build !linux

package deploy

import (
	"errors"
	"os"
)

// openPTY is only implemented on Linux; elsewhere the runbook test skips
// the commands that need a terminal.
func openPTY() (controller, tty *os.File, err error) {
	return nil, nil, errors.ErrUnsupported
}

package store

import (
	"os"
	"testing"
)

// TestMain runs the tests with no Fresh window, so that each sees a change
// on disk in the very next Acquire; TestChangesAreServedOnceFreshHasPassed tests the window.
func TestMain(m *testing.M) {
	defaultFresh = 0
	os.Exit(m.Run())
}

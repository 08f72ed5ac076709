//go:build race

package schema

// raceEnabled: the race detector makes sync.Pool drop items and adds
// allocations, so allocation counts are not checked under -race.
const raceEnabled = true

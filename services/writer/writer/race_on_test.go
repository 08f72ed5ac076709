//go:build race

package writer

// raceEnabled: the race detector's shadow memory and its allocations
// make a process's RSS say nothing about the writer's own memory, so peak
// RSS is not checked under -race.
const raceEnabled = true

//go:build race

package fraud

// raceEnabled is true under the race detector, whose instrumentation makes
// memory and timing measurements meaningless (and 1M-entry builds slow).
const raceEnabled = true

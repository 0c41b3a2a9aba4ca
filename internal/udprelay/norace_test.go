//go:build !race

package udprelay

// raceEnabled: the race detector multiplies RSS with shadow memory.
const raceEnabled = false

//go:build !race

package fraud

const raceEnabled = false

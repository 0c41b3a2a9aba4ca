//go:build !race

package sippolicy

// raceEnabled: under the race detector sync.Pool drops items at random, so
// the pooled slow paths allocate.
const raceEnabled = false

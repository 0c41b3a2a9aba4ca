//go:build !linux

package relay

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }

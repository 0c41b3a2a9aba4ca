package relay

import "time"

// minSample keeps tiny idle timeouts from turning into a busy loop.
const minSample = time.Millisecond

// sampleInterval is how often Pipe samples activity for an idle timeout:
// a quarter of it, so a silent connection closes within 1.25×idle.
func sampleInterval(idle time.Duration) time.Duration {
	return max(idle/4, minSample)
}

// idleClock decides idleness from samples of a counter that grows whenever
// bytes move. It is pure: the caller passes the time of each sample.
type idleClock struct {
	idle     time.Duration
	progress uint64    // counter at the last change
	since    time.Time // when the counter was last seen to change
}

// expired records a sample taken at now and reports whether the counter has
// not changed for at least idle.
func (c *idleClock) expired(progress uint64, now time.Time) bool {
	if progress != c.progress {
		c.progress = progress
		c.since = now
		return false
	}
	return now.Sub(c.since) >= c.idle
}

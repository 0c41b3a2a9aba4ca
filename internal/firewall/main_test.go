package firewall

import (
	"testing"

	"go.uber.org/goleak"
)

// The namespace tests run listeners and probes in goroutines; none may
// outlive its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

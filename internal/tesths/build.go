package tesths

import (
	"context"
	"sync"

	"github.com/dmbridge/dmbridge/internal/devstack"
)

// The binaries only have to be located (and maybe built) once per test
// process; every later Start reuses the answer. Holding the error as well
// means a failed build is reported to every test instead of being retried
// for each one, which would multiply a three-minute failure.
var (
	buildOnce   sync.Once
	buildResult devstack.DendriteBinaries
	buildErr    error
)

func ensureBinaries() (devstack.DendriteBinaries, error) {
	buildOnce.Do(func() {
		// Not a test's context: the result is shared by every test.
		buildResult, buildErr = devstack.EnsureDendrite(context.Background(), nil)
	})
	return buildResult, buildErr
}

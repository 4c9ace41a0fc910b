//go:build tools

// Package dendrite pins the Dendrite homeserver used by the end-to-end tests.
// It is a separate module so that Dendrite's dependencies never enter the
// bridge's own go.mod.
package dendrite

import (
	_ "github.com/element-hq/dendrite/cmd/dendrite"
	_ "github.com/element-hq/dendrite/cmd/generate-keys"
)

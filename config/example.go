package config

import _ "embed"

// The canonical example lives in this package because go:embed cannot reach
// outside it; the copy at the repository root, where people look for it, is
// kept byte-identical by TestRootExampleConfigIsCopy.
//
//go:generate cp example-config.yaml ../example-config.yaml

//go:embed example-config.yaml
var exampleConfig []byte

// ExampleConfig returns the commented example configuration (what
// `bridge -e` prints). The caller gets its own copy.
func ExampleConfig() []byte {
	return append([]byte(nil), exampleConfig...)
}

// Package features ships metalbed's Gherkin features inside the binary, so
// `metalbed scenario run` works from any directory.
package features

import "embed"

// Files holds every *.feature of this folder, at its root.
//
//go:embed *.feature
var Files embed.FS

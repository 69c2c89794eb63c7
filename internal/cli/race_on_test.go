//go:build race

package cli

// raceDetector says the tests run under -race, where CPU-bound work (a
// fleet unpacking its ramdisks) is ten times slower.
const raceDetector = true

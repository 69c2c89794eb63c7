//go:build !race

package cli

// raceDetector says the tests run under -race.
const raceDetector = false

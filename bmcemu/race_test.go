//go:build race

package bmcemu

// raceEnabled: the race detector's instrumentation deepens every frame, so
// stack sizes are not this build's to judge.
const raceEnabled = true

//go:build !race

package bmcemu

const raceEnabled = false

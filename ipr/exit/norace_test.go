//go:build !race

package exit

const raceEnabled = false

//go:build !race

package exit_test

const raceEnabled = false

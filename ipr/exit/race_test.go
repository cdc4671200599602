//go:build race

package exit_test

// raceEnabled is set under the race detector, which slows Sphinx several
// times over: timing measurements are meaningless there.
const raceEnabled = true

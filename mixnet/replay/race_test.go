//go:build race

package replay

// raceEnabled is set under the race detector, which makes the long
// statistical runs too slow to be worth it there.
const raceEnabled = true

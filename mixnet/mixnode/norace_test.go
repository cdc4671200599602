//go:build !race

package mixnode

const raceEnabled = false

//go:build race

package client

// raceEnabled is set under the race detector, which makes building a packet
// about eight times slower (6 ms): tests that need a sustained packet rate
// lower it or skip.
const raceEnabled = true

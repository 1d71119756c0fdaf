//go:build race

package simulation

// raceEnabled says the race detector is on: real-time runs are then far
// too slow for their protocol timeouts, so TestSim20 runs in virtual time.
const raceEnabled = true

//go:build race

package network_test

// raceEnabled skips the synctest simulation under the race detector: with
// go1.26.8 the race runtime aborts in testing/synctest bubbles ("ThreadSanitizer:
// CHECK failed: tsan_rtl.cpp:346", golang/go#78156; 2 of 8 runs here). The
// same code runs under -race in the loopback tests.
const raceEnabled = true

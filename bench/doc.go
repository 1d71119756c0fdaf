// Package bench holds the benchmarks that span the whole engine (the
// others live with their packages) and run.sh, which runs the suite and
// prints one table of figures and their limits; docs/BENCHMARKS.md keeps
// the figures.
package bench

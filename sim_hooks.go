package engine

// Bootstrapped is closed when the node's first DHT bootstrap, started by
// Start in the background, has ended (successfully or not). The simulation
// waits on it before bootstrapping nodes again: network.Node.Bootstrap
// holds a mutex for its whole run, and a goroutine waiting on a mutex stops
// the virtual clock of a testing/synctest bubble.
func (e *Engine) Bootstrapped() <-chan struct{} { return e.bootstrapDone }

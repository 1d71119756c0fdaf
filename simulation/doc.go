// Package simulation runs hundreds of complete rpe nodes in one process and
// measures how a release spreads among them.
//
// Every simulated node is a full engine (engine.Start: all five actors, the
// real DHT and the real QUIC stack) on its own netsim host, whose link has the
// node's upload and download rates, latency and loss. All nodes share one
// protoactor actor system, because one system per node costs about 3 MiB and
// 10 ms each (docs/ARCHITECTURE.md, "Threads of control"). A few plain DHT
// nodes serve as the bootstrap nodes, a publisher (engine.Publish) on its own host signs and
// seeds the release, and optional hostile peers (plain wire peers, not
// engines) corrupt chunks, trickle, claim chunks they lack, gossip an old
// record, stall answers, churn connections under fresh identities or
// announce fake ports (abuse.go). Every packet stays inside netsim's 127.0.0.0/8 subnet.
//
// Scenario.Net = Loopback runs the same scenario over real UDP sockets on
// 127.0.0.1 instead (`rpe sim --net loopback`, and `rpe demo`): the engines
// enforce the rates themselves and the kernel carries the packets, so the
// figures include the real socket path's cost. It runs on the real clock
// only.
//
// Run plays one Scenario and returns a Report: completion times measured
// from the moment of publishing, bytes uploaded by the publisher and by
// everyone, bytes wasted, memory, and the ratio of the time until every node
// had the release to the Kumar–Ross lower bound for peer-assisted
// distribution. WritePlot draws the completion curve.
//
// The same Scenario.Seed gives the same hosts, rates, hostile set and churn
// schedule. Run uses the clock it finds: real time under `rpe sim`, virtual
// time inside a testing/synctest bubble (see runVirtual in the tests; set
// Scenario.Virtual there so the report names the clock).
package simulation

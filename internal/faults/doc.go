// Package faults is pushsync's fault-test suite: it runs pushsyncd as real
// processes against NATS JetStream (a single server, or a three-node
// cluster in the test process), Redis and the APNs and FCM emulators,
// injects faults (kill -9 of a worker, a NATS restart, the loss of the
// stream leader, a Redis crash, push-service outages and throttling,
// malformed input) and checks with a total-queue ledger that no push is
// lost.
//
// The tests are behind the build tag faults, so that go test ./... skips
// them:
//
//	go test -race -tags faults -v ./internal/faults
//
// Each scenario adds a row (events published, pushes expected, received,
// lost, duplicated) to a table printed at the end and, if FAULTS_REPORT
// names a file, written there as Markdown.
package faults

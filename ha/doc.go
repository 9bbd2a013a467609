// Package ha runs one member of a fjord replica group on Kubernetes: it
// elects the primary with a coordination.k8s.io/v1 Lease through client-go's
// tools/leaderelection, keeps the member's own Lease (NAME-ID) with its
// advertise address and replication position, labels the member's Pod with
// its role, and enforces the durability rule of the group.
//
// The rule is Patroni's synchronous_mode_strict. The leader Lease's
// annotations name the synchronous followers; a push is acknowledged only
// when every one of them holds it; and when the primary is gone, only a
// member named there (or one an operator promoted with --force) may take
// the Lease, so no acknowledged change is lost. The check lives in the
// resourcelock the elector uses: an ineligible candidate's attempt to
// acquire is refused, and it keeps following.
//
// The sync set changes only by addition or by replacing a silent member
// with one that already holds every acknowledged change, and the Lease is
// written before the new set is counted: a member that leaves the set
// cannot become primary, one that joins it holds everything.
//
// Fencing is by time, as leaderelection intends: a primary takes writes
// only while its last successful renewal is younger than the renew
// deadline, which is shorter than the lease duration others wait for.
package ha

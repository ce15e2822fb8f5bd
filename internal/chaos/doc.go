// Package chaos is Tabby's fault, load and attack suite. Its tests bring
// up labs (internal/lab), run real traffic between containers attached
// through tabby-cni, inject faults — agents killed with SIGKILL at random
// moments, the datastore stopped, the etcd leader killed, a host lost, the
// racks partitioned — and assert on what users care about: no address held
// twice, nothing leaked after GC, no packet lost on established flows,
// ADDs that fail fast with CNI code 11 instead of hanging, full
// reachability soon after a fault heals. The security tests attack a lab:
// spoofed addresses, containers probing their host's agent, etcd and BGP
// ports, BGP sessions without the TCP-MD5 password, clients without a
// certificate on a TLS lab, secrets in logs and `tabby get` output.
//
// Faults are injected only into the lab's own namespaces and into
// processes the tests started or the lab recorded, by PID; every scenario
// undoes its faults and removes its lab in t.Cleanup, even when it fails.
//
// Every scenario has a short form, run by `go test` (and so by `make
// test`; skipped with -short, like the other lab tests), and a full form
// run by `make chaos` (-chaos.full). -chaos.report FILE appends the
// measured figures (docs/reliability.md quotes them).
//
// The package has no code besides its tests; nothing may import it.
package chaos

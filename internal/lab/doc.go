// Package lab builds a multi-host Tabby cluster out of network namespaces
// on one machine: a fabric namespace with one bridge per rack, a router
// namespace joining the racks, a master running the datastore (and the
// Mesos-master state the DNS reads, and `tabby dns` when it exists), and
// host namespaces each running its own `tabby agent` process. Containers
// are namespaces attached through the real tabby-cni via libcni, the way a
// container runtime (containerd, or Mesos with its 0.1.0 config and
// "org.apache.mesos" args) attaches them.
//
// Everything a lab makes carries its name: namespaces tlab-NAME-…, links
// NAME-…, state under StateRoot/NAME and resolv.conf files under
// /etc/netns/tlab-NAME-…. Nothing is attached to, or routed out of, the
// root namespace: the root namespace reaches the datastore through a unix
// socket in the state directory. Up records what it is about to make
// before it makes it, so Down (and a failed Up) removes everything even
// after a crash.
//
// Namespaces are entered only through internal/netns; processes run in a
// namespace through `ip netns exec`, which also gives each its
// /etc/netns/NS files. Processes are killed only by recorded PID (checked
// against the start time) or as members of the lab's own namespaces.
//
// Probe tries every pair of containers with real traffic (the
// who-can-reach-whom matrix of `tabby lab probe`), opening each socket
// inside the source container's namespace from the caller's process.
//
// The pure halves (naming, addressing plan, Mesos state, Marathon names)
// do no I/O. lab must not import internal/ctl, the agent or the DNS
// server; it talks to them as processes, through the CNI plugin and the
// datastore client.
package lab

// Package labpolicy holds the network-policy conformance suite that runs
// on a lab (internal/lab) with real traffic, in the style of the
// Kubernetes network-policy e2e tests: three namespaces of three labelled
// containers spread over three hosts, a policy applied through the
// datastore, and the whole who-can-reach-whom matrix (`tabby lab probe`)
// compared with a truth table written in the test. It also covers what a
// matrix cannot show: anti-spoofing, port mappings and workload-to-host
// traffic, and measures how long a policy takes to be enforced.
//
// The package has only tests. It uses the lab as a user does (its
// exported API and the tabby binaries) and must not import the agent or
// the policy compiler: the dataplane is judged by the traffic it lets
// through, never by the rules it holds.
package labpolicy

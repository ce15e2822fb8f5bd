// Package cni is Tabby's CNI plugin logic and its wire protocol to the
// local Tabby agent.
//
// The plugin half (Plugin, ParseConfig, IdentityFor, FormatResult) parses
// and validates a CNI request (stdin network configuration, CNI_ARGS, the
// Mesos "org.apache.mesos" args), turns it into a Request, forwards it to
// the agent over a unix socket (Client) and prints the agent's result in
// the caller's CNI version, from 0.1.0 to 1.1.0. The agent half
// (Handler, NewHTTPHandler, Listen) serves that protocol; the agent itself
// implements Handler.
//
// cmd/tabby-cni links this package and must start in a few milliseconds,
// so this package imports only the standard library and the
// containernetworking/cni packages skel, types, version and utils. It must
// never import etcd, GoBGP, nftables, netlink or other Tabby packages; a
// test in cmd/tabby-cni reads `go list -deps` to keep it so.
package cni

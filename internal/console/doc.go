// Package console is Tabby's read-only web console (`tabby console`): HTML
// pages rendered on the server from what the datastore says at the time of
// each request — nodes and their BGP sessions, endpoints, policies by tier
// with the endpoints each selects, IPAM use per pool and block — plus the
// live flows of every node's agent (its /flows API) and, in a lab, the
// reachability matrix. Templates, style sheet and the little script of the
// flows page are embedded in the binary.
//
// It reads; it never writes the datastore, and it has no authentication:
// listen on loopback or behind a proxy that has. It sees what an operator
// sees (the datastore, the agents' HTTP APIs): of the agent it imports only
// the types of those APIs (router.Status, internal/flows), never the policy
// compiler or the dataplane; which endpoints a policy selects it decides
// with internal/api/selector, as the compiler does.
package console

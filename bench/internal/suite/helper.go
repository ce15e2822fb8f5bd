package suite

import (
	"fmt"
	"io"
)

// Helper runs one of the roles tabby-bench re-executes itself as inside a
// namespace (`tabby-bench helper ROLE ...`).
func Helper(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "tabby-bench helper: missing role")
		return 2
	}
	switch args[0] {
	case "crr-server":
		return crrServe(args[1:], stderr)
	case "crr-client":
		return crrClient(args[1:], stdout, stderr)
	case "udp-spray":
		return udpSpray(args[1:], stderr)
	case "dns-stub":
		return dnsStub(args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "tabby-bench helper: unknown role %q\n", args[0])
		return 2
	}
}

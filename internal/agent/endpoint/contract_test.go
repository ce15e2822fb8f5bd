package endpoint_test

import (
	"testing"

	"github.com/tabbynet/tabby/internal/agent/endpoint"
	"github.com/tabbynet/tabby/internal/agent/endpoint/endpointtest"
)

// TestPrivilegedContract runs the Dataplane contract against the kernel,
// in a fresh test host namespace per case; endpointtest runs the same
// contract against the fake.
func TestPrivilegedContract(t *testing.T) {
	endpoint.RequireRoot(t)
	endpointtest.RunContract(t, func(t *testing.T) endpointtest.Harness {
		return endpointtest.Harness{
			DP:          endpoint.HostDP{DP: endpoint.New(nil), Host: endpoint.NewTestHost(t)},
			NewNetNS:    func(t *testing.T) string { return endpoint.NewTestNetNS(t, "tbyt-k-") },
			RemoveNetNS: func(t *testing.T, path string) { endpoint.RemoveTestNetNS(t, path) },
		}
	})
}

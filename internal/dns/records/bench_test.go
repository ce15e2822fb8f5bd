package records

import (
	"fmt"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
)

// BenchmarkBuild10k is the cost of one full rebuild with 10,000 endpoints
// (half of them Marathon tasks) on 100 nodes: what every datastore change
// costs the builder.
func BenchmarkBuild10k(b *testing.B) {
	var nodes []*api.Node
	for i := range 100 {
		nodes = append(nodes, &api.Node{ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("host-%d", i)},
			Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: fmt.Sprintf("10.0.%d.%d/16", i/250, i%250+1)}}})
	}
	var eps []*api.WorkloadEndpoint
	for i := range 10000 {
		ep := &api.WorkloadEndpoint{
			ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("ep-%d", i), Namespace: "default"},
			Spec: api.WorkloadEndpointSpec{Node: fmt.Sprintf("host-%d", i%100), Workload: fmt.Sprintf("app-%d", i/3),
				IPNetworks: []string{fmt.Sprintf("172.29.%d.%d/32", i/250, i%250+1)}},
		}
		if i%2 == 0 {
			ep.Spec.Mesos = &api.MesosInfo{App: fmt.Sprintf("/group/app-%d", i/3), TaskID: fmt.Sprintf("task-%d", i)}
			ep.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolTCP, Port: 80}}
		}
		eps = append(eps, ep)
	}
	cfg := testConfig("netinfo", "host")
	b.ReportAllocs()
	for b.Loop() {
		Build(cfg, Input{Endpoints: eps, Nodes: nodes})
	}
}

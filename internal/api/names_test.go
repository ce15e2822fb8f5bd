package api

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWorkloadEndpointName(t *testing.T) {
	tests := []struct {
		node, orch, workload, endpoint string
		want                           string
	}{
		{"node1", "k8s", "my-nginx-b1337a", "eth0", "node1-k8s-my--nginx--b1337a-eth0"},
		{"host-1", "cni", "0a1b2c3d", "eth0", "host--1-cni-0a1b2c3d-eth0"},
		{"agent.example.com", "mesos", "e8f1-44aa", "net-0", "agent.example.com-mesos-e8f1--44aa-net--0"},
		{"a", "b", "c", "d", "a-b-c-d"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := WorkloadEndpointName(tc.node, tc.orch, tc.workload, tc.endpoint); got != tc.want {
				t.Errorf("WorkloadEndpointName(%q, %q, %q, %q) = %q; want %q", tc.node, tc.orch, tc.workload, tc.endpoint, got, tc.want)
			}
		})
	}
}

func TestWorkloadEndpointNameIsValid(t *testing.T) {
	name := WorkloadEndpointName("host-1", "cni", "0a1b-2c", "eth0")
	w := &WorkloadEndpoint{ObjectMeta: ObjectMeta{Name: name}, Spec: WorkloadEndpointSpec{Node: "host-1"}}
	SetDefaults(w)
	if err := Validate(w); err != nil {
		t.Errorf("Validate() of an endpoint named %q = %v; want nil", name, err)
	}
}

func TestDeepCopy(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tcp := ProtocolTCP
	orig := &GlobalNetworkPolicy{
		TypeMeta:   TypeMeta{APIVersion, "GlobalNetworkPolicy"},
		ObjectMeta: ObjectMeta{Name: "p", Labels: map[string]string{"a": "b"}, CreationTimestamp: &now},
		Spec: GlobalNetworkPolicySpec{
			Order: ptr(10.0),
			Ingress: []Rule{{Action: "Allow", Protocol: &tcp, Destination: EntityRule{Ports: []Port{SinglePort(80)}},
				HTTP: &HTTPMatch{Paths: []any{map[string]any{"exact": "/a"}}}}},
		},
	}
	c := DeepCopy(orig).(*GlobalNetworkPolicy)
	if diff := cmp.Diff(orig, c); diff != "" {
		t.Fatalf("DeepCopy() differs (-orig +copy):\n%s", diff)
	}
	c.Labels["a"] = "changed"
	*c.Spec.Order = 20
	*c.Spec.Ingress[0].Protocol = "UDP"
	c.Spec.Ingress[0].Destination.Ports[0] = SinglePort(81)
	c.Spec.Ingress[0].HTTP.Paths[0].(map[string]any)["exact"] = "/b"
	*c.CreationTimestamp = now.Add(time.Hour)
	if orig.Labels["a"] != "b" || *orig.Spec.Order != 10 || *orig.Spec.Ingress[0].Protocol != "TCP" ||
		orig.Spec.Ingress[0].Destination.Ports[0] != SinglePort(80) || orig.Spec.Ingress[0].HTTP.Paths[0].(map[string]any)["exact"] != "/a" ||
		!orig.CreationTimestamp.Equal(now) {
		t.Errorf("changing the copy changed the original: %+v", orig)
	}
	if DeepCopy(nil) != nil {
		t.Errorf("DeepCopy(nil) != nil")
	}
	var nilPool *IPPool
	if got := DeepCopy(nilPool); got != Resource(nilPool) {
		t.Errorf("DeepCopy(typed nil) = %v; want typed nil", got)
	}
}

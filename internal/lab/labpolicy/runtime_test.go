package labpolicy

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// agentPIDs are the lab's agents' process IDs, by node.
func (w *world) agentPIDs() map[string]int {
	out := map[string]int{}
	for _, n := range w.lab.Nodes() {
		out[n.Name] = n.PID
	}
	return out
}

// TestPrivilegedLabRuntime: the lab as a runtime for the whole policy
// model. A network made while the agents run (its own pool) serves the
// next ADD without an agent restart; a network from `lab up` has its own
// profile, whose labelsToApply policies select; `--port` named ports
// resolve in policy; a running container's new labels take effect at
// once; `lab run --namespace` and `lab namespace` make labelled Namespaces.
func TestPrivilegedLabRuntime(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("rt"), Nodes: 2,
		Networks: []lab.NetworkSpec{{Name: "blue", Labels: map[string]string{"team": "blue"}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pids := w.agentPIDs()

	green := netip.MustParsePrefix("10.250.0.0/16")
	if err := w.lab.AddNetwork(ctx, lab.NetworkSpec{Name: "green", Pool: green}); err != nil {
		t.Fatal(err)
	}
	w.run(
		lab.RunSpec{Name: "g1", Node: "h1", Network: "green"},
		lab.RunSpec{Name: "g2", Node: "h2", Network: "green"},
		lab.RunSpec{Name: "b1", Node: "h1", Network: "blue"},
		lab.RunSpec{Name: "b2", Node: "h2", Network: "blue"},
		lab.RunSpec{Name: "n1", Node: "h1", Namespace: "pay", NamedPorts: []lab.NamedPort{{Name: "web", Protocol: "TCP", Port: 81}}},
		lab.RunSpec{Name: "n2", Node: "h2", Namespace: "pay", Labels: []lab.KeyValue{{Key: "role", Value: "db"}}},
	)

	t.Run("a network added while the agents run serves the next ADD", func(t *testing.T) {
		for _, n := range []string{"g1", "g2"} {
			if ip := w.with(t).ip(n); !green.Contains(ip) {
				t.Errorf("%s got %s; want an address of the green pool %s", n, ip, green)
			}
			e, err := w.endpoint(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(e.Spec.Profiles, []string{"green"}) {
				t.Errorf("%s: profiles %v; want [green]", n, e.Spec.Profiles)
			}
		}
		names := []string{"g1", "g2"}
		w.with(t).expect(t, names, 2, map[string]*truthTable{"tcp/80": allAllowed(names, 2)})
		if got := w.agentPIDs(); !maps.Equal(got, pids) {
			t.Errorf("agent PIDs %v; before the network was added %v: an agent restarted", got, pids)
		}
	})

	t.Run("the profile of a network from lab up applies its labels", func(t *testing.T) {
		w := w.with(t)
		names := []string{"b1", "b2"}
		refs := w.apply(`
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: isolate-team-blue}
spec: {selector: team == 'blue', types: [Ingress]}`)
		defer w.remove(refs)
		w.expect(t, names, 2, map[string]*truthTable{"tcp/80": mustTable(t, names, 2, "b1 -X\nb2 X-")})
	})

	t.Run("named ports from lab run --port", func(t *testing.T) {
		w := w.with(t)
		e, err := w.endpoint(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(e.Spec.Ports, api.WorkloadEndpointPort{Name: "web", Protocol: "TCP", Port: 81}) {
			t.Fatalf("n1's endpoint ports %v; want web TCP 81", e.Spec.Ports)
		}
		refs := w.apply(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-only, namespace: pay}
spec: {podSelector: {}, ingress: [{ports: [{port: web}]}]}`)
		defer w.remove(refs)
		names := []string{"n1", "n2"}
		w.expect(t, names, 2, map[string]*truthTable{
			"tcp/81": mustTable(t, names, 2, "n1 -X\nn2 .-"),
			"tcp/80": mustTable(t, names, 2, "n1 -X\nn2 X-"),
		})
	})

	t.Run("policy follows a running container's new labels", func(t *testing.T) {
		w := w.with(t)
		refs := w.apply(`
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: isolate-db, namespace: pay}
spec: {selector: role == 'db', types: [Ingress]}`)
		defer w.remove(refs)
		names := []string{"n1", "n2"}
		w.expect(t, names, 2, map[string]*truthTable{"tcp/80": mustTable(t, names, 2, "n1 -X\nn2 .-")})
		if out, err := w.tabby("", "lab", "label", w.lab.Name(), "n2", "role=web"); err != nil {
			t.Fatal(err)
		} else if !strings.Contains(out, "role=web") {
			t.Errorf("lab label printed %q; want the new labels", out)
		}
		w.expect(t, names, 2, map[string]*truthTable{"tcp/80": allAllowed(names, 2)})
		if _, err := w.lab.Relabel(ctx, "n1", map[string]string{"role": "db"}, nil); err != nil {
			t.Fatal(err)
		}
		w.expect(t, names, 2, map[string]*truthTable{"tcp/80": mustTable(t, names, 2, "n1 -.\nn2 X-")})
		if _, err := w.tabby("", "lab", "label", w.lab.Name(), "n1", "projectcalico.org/namespace=x"); err == nil {
			t.Error("lab label changed an agent-set label; want an error")
		}
	})

	t.Run("namespaces: created by lab run, labelled by lab namespace", func(t *testing.T) {
		w := w.with(t)
		r, err := w.client.Get(ctx, "Namespace", "", "pay")
		if err != nil {
			t.Fatalf("lab run --namespace pay made no Namespace: %v", err)
		}
		if got := r.GetObjectMeta().Labels[api.LabelMetadataName]; got != "pay" {
			t.Errorf("Namespace pay has %s=%q; want pay", api.LabelMetadataName, got)
		}
		if _, err := w.tabby("", "lab", "namespace", w.lab.Name(), "pay", "--label", "team=payments"); err != nil {
			t.Fatal(err)
		}
		r, err = w.client.Get(ctx, "Namespace", "", "pay")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.GetObjectMeta().Labels["team"]; got != "payments" {
			t.Errorf("Namespace pay label team=%q; want payments", got)
		}
	})
}

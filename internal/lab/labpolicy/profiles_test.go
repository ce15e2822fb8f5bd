package labpolicy

import (
	"context"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/lab"
)

// Two CNI networks, so two default profiles: tabby (t1 on h1, t2 on h2)
// and other (o1 on h1, o2 on h2, Mesos-attached). Columns o1 o2  t1 t2.
var profileNames = []string{"o1", "o2", "t1", "t2"}

// tProfiles is what the default profiles allow: ingress from the same
// network, any egress.
const tProfiles = `
o1 -. XX
o2 .- XX
t1 XX -.
t2 XX .-`

type profileCase struct {
	name     string
	manifest string
	// deleteProfiles are removed for the case (and restored after).
	deleteProfiles []string
	want           string
}

var profileCases = []profileCase{
	{
		name: "a policy selecting an endpoint replaces its profile in that direction",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: other-from-tabby}
spec:
  selector: has(other)
  ingress: [{action: Allow, source: {selector: has(tabby)}}]`,
		want: `
o1 -X XX
o2 X- XX
t1 .. -.
t2 .. .-`,
	},
	{
		name: "Pass hands over to the profile, which allows",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: other-from-tabby}
spec:
  selector: has(other)
  ingress: [{action: Allow, source: {selector: has(tabby)}}]
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: tabby-pass-to-other}
spec: {order: 1, selector: has(tabby), egress: [{action: Pass, destination: {selector: has(other)}}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: tabby-deny}
spec: {order: 2, selector: has(tabby), egress: [{action: Deny}]}`,
		want: `
o1 -X XX
o2 X- XX
t1 .. -X
t2 .. X-`,
	},
	{
		name: "Pass hands over to the profile, which denies, skipping a later Allow",
		manifest: `
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: pass-t1}
spec: {order: 1, selector: has(other), ingress: [{action: Pass, source: {nets: ["{{ip "t1"}}/32"]}}]}
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: allow-all}
spec: {order: 2, selector: has(other), ingress: [{action: Allow}]}`,
		want: `
o1 -. XX
o2 .- XX
t1 XX -.
t2 .. .-`,
	},
	{
		name: "a profile's rules can be edited",
		manifest: `
apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: other}
spec:
  labelsToApply: {other: ""}
  ingress: [{action: Allow}]
  egress: [{action: Allow}]`,
		want: `
o1 -. XX
o2 .- XX
t1 .. -.
t2 .. .-`,
	},
	{
		name: "labelsToApply labels the profile's endpoints for selectors",
		manifest: `
apiVersion: tabby.dev/v1
kind: Profile
metadata: {name: tabby}
spec:
  labelsToApply: {tabby: "", tier: front}
  ingress: [{action: Allow, source: {selector: has(tabby)}}]
  egress: [{action: Allow}]
---
apiVersion: tabby.dev/v1
kind: GlobalNetworkPolicy
metadata: {name: front-from-other}
spec:
  selector: tier == 'front'
  ingress: [{action: Allow, source: {selector: has(other)}}]`,
		want: `
o1 -. ..
o2 .- ..
t1 XX -X
t2 XX X-`,
	},
	{
		name:           "an endpoint whose profile does not exist allows nothing",
		deleteProfiles: []string{"other"},
		want: `
o1 -X XX
o2 X- XX
t1 XX -.
t2 XX .-`,
	},
}

// TestPrivilegedProfiles checks the default profile behaviour across two
// networks and what policies, Pass and profile edits do to it.
func TestPrivilegedProfiles(t *testing.T) {
	requirePrivileged(t)
	w := upWorld(t, lab.Config{Name: uniqueName("pp"), Nodes: 2})
	w.run(
		lab.RunSpec{Name: "t1", Node: "h1"},
		lab.RunSpec{Name: "t2", Node: "h2"},
		lab.RunSpec{Name: "o1", Node: "h1", Network: "other", MesosApp: "/other/o1"},
		lab.RunSpec{Name: "o2", Node: "h2", Network: "other", MesosApp: "/other/o2"},
	)
	names, group := profileNames, 2
	base := mustTable(t, names, group, tProfiles)
	all := func(tt *truthTable) map[string]*truthTable {
		m := map[string]*truthTable{"icmp": tt}
		for _, p := range allProbes {
			m[p] = tt
		}
		return m
	}
	if !w.expect(t, names, group, all(base)) {
		t.Fatal("the default profiles do not allow exactly the traffic within each network")
	}
	ctx := context.Background()
	saved := map[string]api.Resource{}
	for _, p := range []string{"tabby", "other"} {
		r, err := w.client.Get(ctx, "Profile", "", p)
		if err != nil {
			t.Fatalf("the agents did not create the default profile %s: %v", p, err)
		}
		saved[p] = r
	}
	for _, tc := range profileCases {
		restored := true
		t.Run(tc.name, func(t *testing.T) {
			w := w.with(t)
			want := mustTable(t, names, group, tc.want)
			if want.equal(base) {
				t.Fatal("the case expects the default matrix")
			}
			var refs []objRef
			defer func() {
				w.remove(refs)
				for _, p := range saved {
					c := p
					c.GetObjectMeta().ResourceVersion = ""
					if _, _, err := w.client.Apply(ctx, c); err != nil {
						t.Errorf("restore profile %s: %v", c.GetObjectMeta().Name, err)
					}
				}
				time.Sleep(settle)
				if !w.expect(t, names, group, all(base)) {
					restored = false
				}
			}()
			for _, p := range tc.deleteProfiles {
				w.remove([]objRef{{"Profile", "", p}})
			}
			refs = w.apply(tc.manifest)
			time.Sleep(settle)
			w.expect(t, names, group, all(want))
		})
		if !restored {
			t.Fatal("stopping: the default profiles did not come back")
		}
	}
}

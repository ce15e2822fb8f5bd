package api

import (
	"strings"
	"testing"
)

// TestStagedPolicies: staged kinds decode and validate as the policies
// they stage; a bad stagedAction or a bad staged rule is refused naming
// the field and value; Enforced gives the policy they stage.
func TestStagedPolicies(t *testing.T) {
	for _, tc := range []struct {
		name, doc, err string
	}{
		{"staged np", "kind: StagedNetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {selector: all(), ingress: [{action: Deny}]}", ""},
		{"staged gnp delete", "kind: StagedGlobalNetworkPolicy\nmetadata: {name: p}\nspec: {stagedAction: Delete}", ""},
		{"staged knp", "kind: StagedKubernetesNetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: db}}}", ""},
		{"bad staged action", "kind: StagedNetworkPolicy\nmetadata: {name: p}\nspec: {stagedAction: Maybe}", `spec.stagedAction: "Maybe" is not Set or Delete`},
		{"bad staged rule", "kind: StagedGlobalNetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{action: Jump}]}", `spec.ingress[0].action`},
		{"bad staged knp", "kind: StagedKubernetesNetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Sideways]}", `Sideways`},
		{"staged gnp namespaced", "kind: StagedGlobalNetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {}", `metadata.namespace`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte("apiVersion: projectcalico.org/v3\n" + tc.doc + "\n"))
			if tc.err == "" {
				if err != nil || len(rs) != 1 {
					t.Fatalf("got %v, want one resource", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error containing %q", err, tc.err)
			}
		})
	}
	rs, err := Decode([]byte("apiVersion: projectcalico.org/v3\nkind: StagedKubernetesNetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec: {podSelector: {matchLabels: {app: db}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	np, err := rs[0].(*StagedKubernetesNetworkPolicy).Enforced()
	if err != nil || np.Name != "knp.default.db" || np.Namespace != "shop" || len(np.Spec.Types) != 1 {
		t.Fatalf("Enforced() = %+v, %v; want knp.default.db in shop, type Ingress", np, err)
	}
}

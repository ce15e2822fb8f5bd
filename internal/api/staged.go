package api

import (
	"strings"
)

// Staged policies (Calico 3.30): a policy of the same shape that is
// evaluated and never enforced. Flow logs show the verdict it would give
// (pendingAction, docs/design/policy.md "Staged policies"); promoting it
// means applying it as the kind it stages.

// Staged actions.
const (
	StagedActionSet    = "Set"
	StagedActionDelete = "Delete"
)

// StagedNetworkPolicy stages a NetworkPolicy of the same name.
type StagedNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       StagedNetworkPolicySpec `json:"spec"`
}

type StagedNetworkPolicySpec struct {
	// StagedAction is Set (the default: the policy as staged) or Delete
	// (as if the NetworkPolicy of this name were deleted).
	StagedAction      string `json:"stagedAction,omitempty"`
	NetworkPolicySpec `json:",inline"`
}

// StagedGlobalNetworkPolicy stages a GlobalNetworkPolicy of the same name.
type StagedGlobalNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       StagedGlobalNetworkPolicySpec `json:"spec"`
}

type StagedGlobalNetworkPolicySpec struct {
	StagedAction            string `json:"stagedAction,omitempty"`
	GlobalNetworkPolicySpec `json:",inline"`
}

// StagedKubernetesNetworkPolicy stages a Kubernetes NetworkPolicy (its
// spec is networking.k8s.io/v1's), translated as the Kubernetes one is:
// the NetworkPolicy "knp.default.<name>".
type StagedKubernetesNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       StagedKubernetesNetworkPolicySpec `json:"spec"`
}

type StagedKubernetesNetworkPolicySpec struct {
	StagedAction  string `json:"stagedAction,omitempty"`
	k8sPolicySpec `json:",inline"`
}

func (*StagedNetworkPolicy) KindInfo() KindInfo       { return kindInfo("StagedNetworkPolicy") }
func (*StagedGlobalNetworkPolicy) KindInfo() KindInfo { return kindInfo("StagedGlobalNetworkPolicy") }
func (*StagedKubernetesNetworkPolicy) KindInfo() KindInfo {
	return kindInfo("StagedKubernetesNetworkPolicy")
}

// StagedKinds are the staged kinds, each with the kind it stages.
var StagedKinds = map[string]string{
	"StagedNetworkPolicy":           "NetworkPolicy",
	"StagedGlobalNetworkPolicy":     "GlobalNetworkPolicy",
	"StagedKubernetesNetworkPolicy": "NetworkPolicy",
}

// IsDelete reports whether a staged action is Delete.
func IsStagedDelete(action string) bool { return strings.EqualFold(action, StagedActionDelete) }

// Enforced is the NetworkPolicy s stages.
func (s *StagedNetworkPolicy) Enforced() *NetworkPolicy {
	return &NetworkPolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"}, ObjectMeta: s.ObjectMeta, Spec: s.Spec.NetworkPolicySpec}
}

// Enforced is the GlobalNetworkPolicy s stages.
func (s *StagedGlobalNetworkPolicy) Enforced() *GlobalNetworkPolicy {
	return &GlobalNetworkPolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: "GlobalNetworkPolicy"}, ObjectMeta: s.ObjectMeta, Spec: s.Spec.GlobalNetworkPolicySpec}
}

// Enforced is the NetworkPolicy ("knp.default.<name>") s stages, or the
// problems of its spec.
func (s *StagedKubernetesNetworkPolicy) Enforced() (*NetworkPolicy, error) {
	var p problems
	k := k8sNetworkPolicy{ObjectMeta: s.ObjectMeta, Spec: s.Spec.k8sPolicySpec}
	np := k.translate(&p)
	if err := p.err(); err != nil {
		return nil, err
	}
	np.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: "NetworkPolicy"}
	return np, nil
}

func (p *problems) checkStagedAction(a string) {
	switch {
	case a == "", strings.EqualFold(a, StagedActionSet), strings.EqualFold(a, StagedActionDelete):
	default:
		p.add("spec.stagedAction", "%s is not Set or Delete", quote(a))
	}
}

// checkStaged validates a staged policy as the policy it stages.
func (p *problems) checkStaged(r Resource) {
	switch r := r.(type) {
	case *StagedNetworkPolicy:
		p.checkStagedAction(r.Spec.StagedAction)
		if !IsStagedDelete(r.Spec.StagedAction) {
			p.checkNetworkPolicy(&r.Spec.NetworkPolicySpec)
			p.checkTieredName(r.Name, r.Spec.Tier)
		}
	case *StagedGlobalNetworkPolicy:
		p.checkStagedAction(r.Spec.StagedAction)
		if !IsStagedDelete(r.Spec.StagedAction) {
			p.checkGlobalNetworkPolicy(&r.Spec.GlobalNetworkPolicySpec)
			p.checkTieredName(r.Name, r.Spec.Tier)
		}
	case *StagedKubernetesNetworkPolicy:
		p.checkStagedAction(r.Spec.StagedAction)
		k := k8sNetworkPolicy{ObjectMeta: r.ObjectMeta, Spec: r.Spec.k8sPolicySpec}
		k.translate(p)
	}
}

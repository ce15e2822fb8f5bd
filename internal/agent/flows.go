package agent

import (
	"github.com/tabbynet/tabby/internal/agent/flowlog"
	"github.com/tabbynet/tabby/internal/agent/policy"
)

// FlowObserver is told what the dataplane programmed, so that flow logs
// can name the policy that decided each flow (flowlog.Collector).
type FlowObserver interface {
	PolicyState(s *policy.State, staged *flowlog.Staged)
	PolicyChanges(changes []policy.Change)
	// Programmed is the ruleset to program instead of rs: rs with the
	// deny paths logging to NFLOG.
	Programmed(rs *policy.Ruleset) *policy.Ruleset
}

var _ FlowObserver = (*flowlog.Collector)(nil)

// stagedOf converts the view's staged policies for the flow logs.
func stagedOf(v *View) *flowlog.Staged {
	return flowlog.StagedFrom(v.StagedPolicies, v.StagedGlobalPolicies, v.StagedKubernetesPolicies)
}

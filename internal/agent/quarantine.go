package agent

import (
	"slices"
	"sync"

	"github.com/tabbynet/tabby/internal/agent/policy"
	"github.com/tabbynet/tabby/internal/api"
)

// QuarantineReporter is implemented by a Dataplane whose policy compiler
// can quarantine policies it cannot compile (KernelDataplane does).
type QuarantineReporter interface {
	// Quarantined returns what the last Sync quarantined.
	Quarantined() []policy.Quarantine
}

// quarantineState is what the agent last reported as quarantined: in the
// tabby_agent_policy_quarantined metric and in its Node's status.
type quarantineState struct {
	mu   sync.Mutex
	list []policy.Quarantine
	// dirty wakes the heartbeat loop to write the Node status at once.
	dirty chan struct{}
}

// noteQuarantine reads the dataplane's quarantine after a sync; when it
// changed, the metric is updated and a Node status write is requested.
func (a *Agent) noteQuarantine() {
	r, ok := a.dp.(QuarantineReporter)
	if !ok {
		return
	}
	qs := r.Quarantined()
	a.quarantine.mu.Lock()
	changed := !slices.Equal(qs, a.quarantine.list)
	a.quarantine.list = qs
	a.quarantine.mu.Unlock()
	if !changed {
		return
	}
	a.m.quarantined.Reset()
	for _, q := range qs {
		a.m.quarantined.WithLabelValues(q.ID()).Set(1)
	}
	select {
	case a.quarantine.dirty <- struct{}{}:
	default:
	}
}

// quarantineStatus is the Node status form of the quarantine.
func (a *Agent) quarantineStatus() []api.QuarantinedPolicy {
	a.quarantine.mu.Lock()
	defer a.quarantine.mu.Unlock()
	var out []api.QuarantinedPolicy
	for _, q := range a.quarantine.list {
		out = append(out, api.QuarantinedPolicy{Kind: q.Kind, Namespace: q.Namespace, Name: q.Name, Reason: q.Reason})
	}
	return out
}

// PolicyStatsReporter is implemented by a Dataplane that reports what its
// last programmed table holds (KernelDataplane does).
type PolicyStatsReporter interface {
	PolicyStats() PolicyStats
}

// notePolicyStats sets the tabby_agent_policy_table gauges after a sync.
func (a *Agent) notePolicyStats() {
	r, ok := a.dp.(PolicyStatsReporter)
	if !ok {
		return
	}
	st := r.PolicyStats()
	a.m.table.WithLabelValues("policies").Set(float64(st.Policies))
	a.m.table.WithLabelValues("chains").Set(float64(st.Chains))
	a.m.table.WithLabelValues("rules").Set(float64(st.Rules))
}

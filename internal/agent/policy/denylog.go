package policy

// Deny logging for flow logs (docs/design/policy.md "Flow logs"): every
// drop that is a policy decision jumps to one chain that logs the packet
// to an NFLOG group, under one kernel rate limit, and then drops it.
// Allowed traffic is never logged: the agent learns of it from conntrack.

// LogDenyChain is the chain every deny path jumps to when flow logs are on.
const LogDenyChain = "log-deny"

// LogDenyPrefix is the NFLOG prefix of denied packets.
const LogDenyPrefix = "tabby-deny"

// Limit matches while packets arrive at most Rate per second (with a
// burst of Burst packets): nft `limit rate R/second burst B packets`.
type Limit struct{ Rate, Burst uint32 }

// LogGroup sends the packet to NFLOG group Group with Prefix and goes on.
type LogGroup struct {
	Group  uint16
	Prefix string
}

func (Limit) isMatch()   {}
func (LogGroup) isStmt() {}

// DenyLogger rewrites rulesets for flow logs; it remembers the chains it
// rewrote, so a chain the ruleset shares with the previous one (the
// incremental engine keeps unchanged chains) is rewritten once and keeps
// its identity for the driver.
type DenyLogger struct {
	Group uint16
	Rate  uint32
	done  map[*Chain]*Chain
}

// Apply returns rs with every drop verdict but `ct state invalid drop`
// replaced by a jump to LogDenyChain, and that chain added. rs is not
// modified.
func (d *DenyLogger) Apply(rs *Ruleset) *Ruleset {
	out := *rs
	out.Chains = make([]*Chain, 0, len(rs.Chains)+1)
	next := make(map[*Chain]*Chain, len(rs.Chains))
	logChain := &Chain{Name: LogDenyChain, Rules: []Rule{
		{Matches: []Match{Limit{Rate: d.Rate, Burst: d.Rate}}, Stmts: []Stmt{LogGroup{Group: d.Group, Prefix: LogDenyPrefix}}},
		{Verdict: Verdict{Kind: Drop}},
	}}
	added := false
	for _, c := range rs.Chains {
		if !added && c.Name > LogDenyChain {
			out.Chains, added = append(out.Chains, logChain), true
		}
		nc, ok := d.done[c]
		if !ok {
			nc = rewriteDrops(c)
		}
		next[c] = nc
		out.Chains = append(out.Chains, nc)
	}
	if !added {
		out.Chains = append(out.Chains, logChain)
	}
	d.done = next
	return &out
}

func rewriteDrops(c *Chain) *Chain {
	var rules []Rule
	for i, r := range c.Rules {
		if r.Verdict.Kind != Drop || len(r.Matches) == 1 && r.Matches[0] == (CtState{State: CtInvalid}) {
			continue
		}
		if rules == nil {
			rules = append([]Rule(nil), c.Rules...)
		}
		rules[i].Verdict = Verdict{Kind: Jump, Chain: LogDenyChain}
	}
	if rules == nil {
		return c
	}
	return &Chain{Name: c.Name, Hook: c.Hook, Rules: rules}
}

package policy

// ChainOrigin says which policy or profile a chain of Compile's output
// (the reference form) was compiled from, and which API rule each of its
// nft rules comes from: what flow logs name as the deciding rule
// (docs/design/policy.md "Flow logs"). Flatten's chains have no origins:
// they mix rules of many policies.
type ChainOrigin struct {
	Kind      string // NetworkPolicy, GlobalNetworkPolicy or Profile
	Namespace string // NetworkPolicy only
	Name      string
	Tier      string // policies only
	Ingress   bool
	// Rules holds, for each nft rule of the chain, the index of the API
	// rule (in spec.ingress or spec.egress) it was compiled from. Nil for
	// a quarantined object's chain (its one drop is no rule of it).
	Rules []int
}

// noteOrigin records the owner of a policy or profile chain.
func (c *compiler) noteOrigin(chain string, o ChainOrigin) {
	if c.origins == nil {
		c.origins = map[string]ChainOrigin{}
	}
	if prev, ok := c.origins[chain]; ok {
		o.Rules = prev.Rules
	}
	c.origins[chain] = o
}

// noteRuleOrigins records the API rule index of each nft rule of a chain.
func (c *compiler) noteRuleOrigins(chain string, idx []int) {
	if c.origins == nil {
		c.origins = map[string]ChainOrigin{}
	}
	o := c.origins[chain]
	o.Rules = idx
	c.origins[chain] = o
}

func (p *policyInfo) origin(ingress bool) ChainOrigin {
	o := ChainOrigin{Kind: p.kind, Name: p.name, Ingress: ingress}
	if !p.global {
		o.Namespace = p.namespace
	}
	if p.tier != nil {
		o.Tier = p.tier.name
	}
	return o
}

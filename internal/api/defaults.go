package api

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults, as Calico v3.
const (
	DefaultBlockSizeV4     = 26
	DefaultBlockSizeV6     = 122
	DefaultNodeSelector    = "all()"
	DefaultBGPPort         = 179
	DefaultLeakGracePeriod = 15 * time.Minute
)

// Labels Calico (and Tabby) put on every WorkloadEndpoint so that policies
// can select endpoints by namespace and orchestrator.
const (
	LabelNamespace    = "projectcalico.org/namespace"
	LabelOrchestrator = "projectcalico.org/orchestrator"
)

// RedactedValue replaces secrets in output (see Redact).
const RedactedValue = "<redacted>"

// SetDefaults fills in what Calico v3 defaults and normalizes spellings, so
// that what is stored and compared is canonical. It never fails: values it
// cannot interpret are left for Validate to report. Calling it twice is the
// same as calling it once.
func SetDefaults(r Resource) {
	if r == nil {
		return
	}
	k := r.KindInfo()
	tm := r.GetTypeMeta()
	if tm.Kind == "" {
		tm.Kind = k.Kind
	}
	if tm.APIVersion == "" {
		tm.APIVersion = APIVersion
	}
	m := r.GetObjectMeta()
	if k.Scope == Namespaced && m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	switch r := r.(type) {
	case *IPPool:
		r.Spec.setDefaults()
	case *IPAMConfig:
		if r.Spec.AutoAllocateBlocks == nil {
			t := true
			r.Spec.AutoAllocateBlocks = &t
		}
	case *Tier:
		if r.Spec.DefaultAction == "" {
			r.Spec.DefaultAction = ActionDeny
			if b, ok := BuiltInTiers()[r.Name]; ok {
				r.Spec.DefaultAction = b.DefaultAction
			}
		}
		if b, ok := BuiltInTiers()[r.Name]; ok && r.Spec.Order == nil {
			r.Spec.Order = b.Order
		}
	case *NetworkPolicy:
		r.Spec.Types = defaultTypes(r.Spec.Types, r.Spec.Ingress, r.Spec.Egress)
		normalizeRules(r.Spec.Ingress)
		normalizeRules(r.Spec.Egress)
	case *GlobalNetworkPolicy:
		r.Spec.Types = defaultTypes(r.Spec.Types, r.Spec.Ingress, r.Spec.Egress)
		normalizeRules(r.Spec.Ingress)
		normalizeRules(r.Spec.Egress)
	case *Namespace:
		if r.Name != "" {
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			r.Labels[LabelMetadataName] = r.Name
		}
	case *Profile:
		normalizeRules(r.Spec.Ingress)
		normalizeRules(r.Spec.Egress)
	case *WorkloadEndpoint:
		for i := range r.Spec.Ports {
			r.Spec.Ports[i].Protocol = normalizeProtocol(r.Spec.Ports[i].Protocol)
		}
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[LabelNamespace] = r.Namespace
		if r.Spec.Orchestrator != "" {
			r.Labels[LabelOrchestrator] = r.Spec.Orchestrator
		}
	case *HostEndpoint:
		for i := range r.Spec.Ports {
			r.Spec.Ports[i].Protocol = normalizeProtocol(r.Spec.Ports[i].Protocol)
		}
	case *FelixConfiguration:
		for _, l := range []*[]ProtoPort{r.Spec.FailsafeInboundHostPorts, r.Spec.FailsafeOutboundHostPorts} {
			if l == nil {
				continue
			}
			for i := range *l {
				pp := &(*l)[i]
				switch u := strings.ToUpper(pp.Protocol); u {
				case "TCP", "UDP", "SCTP":
					pp.Protocol = u
				}
			}
		}
	}
}

func (s *IPPoolSpec) setDefaults() {
	if pfx, err := netip.ParsePrefix(s.CIDR); err == nil {
		if pfx == pfx.Masked() {
			s.CIDR = pfx.String() // canonical spelling; host bits are Validate's to report
		}
		if s.BlockSize == 0 {
			s.BlockSize = DefaultBlockSizeV4
			if !pfx.Addr().Is4() {
				s.BlockSize = DefaultBlockSizeV6
			}
		}
	}
	if s.IPIPMode == "" {
		s.IPIPMode = EncapNever
	}
	if s.VXLANMode == "" {
		s.VXLANMode = EncapNever
	}
	if s.NodeSelector == "" {
		s.NodeSelector = DefaultNodeSelector
	}
	if len(s.AllowedUses) == 0 {
		s.AllowedUses = []string{AllowedUseWorkload, AllowedUseTunnel}
	}
}

// defaultTypes is Calico's rule: Ingress; Egress if there are only egress
// rules; both if there are both.
func defaultTypes(types []string, ingress, egress []Rule) []string {
	if len(types) > 0 {
		return types
	}
	switch {
	case len(ingress) > 0 && len(egress) > 0:
		return []string{PolicyTypeIngress, PolicyTypeEgress}
	case len(egress) > 0:
		return []string{PolicyTypeEgress}
	default:
		return []string{PolicyTypeIngress}
	}
}

func normalizeRules(rules []Rule) {
	for i := range rules {
		r := &rules[i]
		if r.Protocol != nil {
			p := normalizeProtocol(*r.Protocol)
			r.Protocol = &p
		}
		if r.NotProtocol != nil {
			p := normalizeProtocol(*r.NotProtocol)
			r.NotProtocol = &p
		}
	}
}

// normalizeProtocol spells names canonically ("tcp" → "TCP") and numbers
// in plain decimal ("06" → "6").
func normalizeProtocol(p Protocol) Protocol {
	if c := p.Canonical(); c != p {
		return c
	}
	if n, err := strconv.ParseUint(string(p), 10, 8); err == nil {
		return Protocol(strconv.FormatUint(n, 10))
	}
	return p
}

// ---- Accessors giving the effective value of optional settings ----

// Prefix parses the pool's CIDR.
func (s *IPPoolSpec) Prefix() (netip.Prefix, error) { return netip.ParsePrefix(s.CIDR) }

// IPVersion is 4 or 6 (0 if the CIDR does not parse).
func (s *IPPoolSpec) IPVersion() int {
	pfx, err := s.Prefix()
	if err != nil {
		return 0
	}
	return ipVersion(pfx.Addr())
}

// EffectiveBlockSize is BlockSize, or its default for the pool's IP version.
func (s *IPPoolSpec) EffectiveBlockSize() int {
	if s.BlockSize != 0 {
		return s.BlockSize
	}
	if s.IPVersion() == 6 {
		return DefaultBlockSizeV6
	}
	return DefaultBlockSizeV4
}

// AllowsUse reports whether addresses of the pool may be used for use
// (AllowedUseWorkload or AllowedUseTunnel); no list means both.
func (s *IPPoolSpec) AllowsUse(use string) bool {
	if len(s.AllowedUses) == 0 {
		return use == AllowedUseWorkload || use == AllowedUseTunnel
	}
	for _, u := range s.AllowedUses {
		if u == use {
			return true
		}
	}
	return false
}

// MeshEnabled says whether nodes peer in a full mesh (default true).
// A nil receiver (no BGPConfiguration) gives the default.
func (s *BGPConfigurationSpec) MeshEnabled() bool {
	if s == nil || s.NodeToNodeMeshEnabled == nil {
		return true
	}
	return *s.NodeToNodeMeshEnabled
}

// ASN is the cluster's default AS number (default 64512).
func (s *BGPConfigurationSpec) ASN() ASNumber {
	if s == nil || s.ASNumber == nil {
		return DefaultASNumber
	}
	return *s.ASNumber
}

// Port is the BGP listen port (default 179).
func (s *BGPConfigurationSpec) Port() uint16 {
	if s == nil || s.ListenPort == 0 {
		return DefaultBGPPort
	}
	return s.ListenPort
}

// GracePeriod is how long a leaked allocation is kept before GC (default 15m).
func (s *IPAMConfigSpec) GracePeriod() time.Duration {
	if s == nil || s.LeakGracePeriod == nil {
		return DefaultLeakGracePeriod
	}
	return s.LeakGracePeriod.Duration
}

// AutoAllocate says whether hosts may claim new blocks (default true).
func (s *IPAMConfigSpec) AutoAllocate() bool {
	if s == nil || s.AutoAllocateBlocks == nil {
		return true
	}
	return *s.AutoAllocateBlocks
}

// EndpointToHostAction is what happens to workload traffic addressed to
// its host: Drop (default), Return or Accept.
func (s *FelixConfigurationSpec) EndpointToHostAction() string {
	if s == nil || s.DefaultEndpointToHostAction == "" {
		return EndpointToHostDrop
	}
	return s.DefaultEndpointToHostAction
}

// EffectiveTypes is Types, or Calico's default for the rules present.
func (s *NetworkPolicySpec) EffectiveTypes() []string {
	return defaultTypes(s.Types, s.Ingress, s.Egress)
}

// EffectiveTypes is Types, or Calico's default for the rules present.
func (s *GlobalNetworkPolicySpec) EffectiveTypes() []string {
	return defaultTypes(s.Types, s.Ingress, s.Egress)
}

package router

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/tabbynet/tabby/internal/agent/routing"
	"github.com/tabbynet/tabby/internal/agent/routing/kernel"
)

// StatusPath is where Handler is mounted on the agent's HTTP server.
const StatusPath = "/status/bgp"

// Status is the routing state of one host, as `tabby node status` shows it.
type Status struct {
	Node string `json:"node"`
	// BGP is the speaker's configuration (nil: no speaker).
	BGP   *BGPStatus   `json:"bgp,omitempty"`
	Peers []PeerStatus `json:"peers"`
	// Adverts are the prefixes this host originates.
	Adverts []string `json:"adverts"`
	// Routes are the kernel routes Tabby keeps on this host.
	Routes []string `json:"routes"`
	// VXLAN and IPIP describe the tunnel devices ("" none).
	VXLAN string `json:"vxlan,omitempty"`
	IPIP  string `json:"ipip,omitempty"`
	// Problems are conditions to look at (a node without tunnel address, a
	// route another program holds, a kernel without IP-in-IP, …).
	Problems []string `json:"problems,omitempty"`
	// Synced: BGP has re-learned the routes since the start.
	Synced    bool      `json:"synced"`
	LastPass  time.Time `json:"lastPass,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// BGPStatus is the speaker's configuration.
type BGPStatus struct {
	RouterID   string `json:"routerID"`
	ASN        uint32 `json:"asNumber"`
	ListenPort uint16 `json:"listenPort"`
	// ClusterID is set on route reflectors.
	ClusterID string `json:"routeReflectorClusterID,omitempty"`
}

// PeerStatus is one session, in calicoctl's terms.
type PeerStatus struct {
	Address string `json:"address"`
	Port    uint16 `json:"port,omitempty"`
	ASN     uint32 `json:"asNumber"`
	// Type is "node-to-node mesh", "route reflector", "global" or
	// "node specific".
	Type string `json:"type"`
	// Node is the peer's node name, when it is a Tabby node.
	Node string `json:"node,omitempty"`
	// Source is the BGPPeer the session comes from.
	Source string `json:"source,omitempty"`
	// State is "up" (established) or "start" (anything else), Since when
	// it got there, Info the BGP state and the last error.
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	Info     string    `json:"info"`
	Received uint64    `json:"prefixesReceived"`
	// BFD is the BFD session state (Up, Down, Init, AdminDown; "": BFD
	// is off for the session).
	BFD string `json:"bfd,omitempty"`
}

// Status returns the last state; it reads the sessions live.
func (r *Router) Status() Status {
	r.mu.Lock()
	st := r.status
	st.Peers = slices.Clone(st.Peers)
	r.mu.Unlock()
	if r.speaker == nil {
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	live, err := r.speaker.Peers(ctx)
	if err != nil {
		st.Problems = append(st.Problems, "read BGP sessions: "+err.Error())
		return st
	}
	byAddr := map[string]int{}
	for i, p := range live {
		byAddr[p.Address.String()] = i
	}
	for i := range st.Peers {
		p := &st.Peers[i]
		j, ok := byAddr[p.Address]
		if !ok {
			p.State, p.Info = "start", "Idle (not configured yet)"
			continue
		}
		l := live[j]
		p.State = "start"
		if l.State == "Established" {
			p.State = "up"
		}
		p.Since, p.Info, p.Received, p.BFD = l.Since, l.Summary(), l.Accepted, l.BFD
	}
	return st
}

// recordPass keeps what a pass did for Status.
func (r *Router) recordPass(p *routing.Plan, ks *routing.KernelState, rep kernel.Report, problems []string, err error) {
	st := Status{Node: r.cfg.Node, Synced: r.synced, LastPass: time.Now(), Peers: []PeerStatus{}, Adverts: []string{}, Routes: []string{}}
	if p.BGP != nil {
		st.BGP = &BGPStatus{RouterID: p.BGP.RouterID.String(), ASN: uint32(p.BGP.ASN), ListenPort: p.BGP.ListenPort, ClusterID: p.BGP.ClusterID}
		for _, pr := range p.BGP.Peers {
			st.Peers = append(st.Peers, PeerStatus{
				Address: pr.Address.String(), Port: pr.Port, ASN: uint32(pr.ASN), Type: string(pr.Type),
				Node: pr.Node, Source: pr.Source, State: "start",
			})
		}
	}
	for _, a := range p.Adverts {
		st.Adverts = append(st.Adverts, a.String())
	}
	for _, rt := range ks.Routes {
		st.Routes = append(st.Routes, rt.String())
	}
	if v := ks.VXLAN; v != nil {
		st.VXLAN = v.Name + " " + v.MAC
		if v.Addr.IsValid() { // none when only IPv6 pools use VXLAN
			st.VXLAN = v.Name + " " + v.Addr.String() + " " + v.MAC
		}
	}
	if t := ks.IPIP; t != nil {
		st.IPIP = t.Name + " " + t.Addr.String()
	}
	st.Problems = append(st.Problems, p.Problems...)
	st.Problems = append(st.Problems, problems...)
	st.Problems = append(st.Problems, rep.Conflicts...)
	if rep.IPIP != nil {
		st.Problems = append(st.Problems, rep.IPIP.Error())
		st.IPIP += " (not working: the kernel has no IP-in-IP support)"
	}
	if err != nil {
		st.LastError = err.Error()
	}
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
}

// Handler serves Status as JSON (GET StatusPath).
func (r *Router) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r.Status())
	})
}

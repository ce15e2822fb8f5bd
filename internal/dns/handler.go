package dns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// ednsSize is the UDP payload size we advertise (the DNS flag day 2020
// value, safe from fragmentation).
const ednsSize = 1232

// handler answers queries: from the current snapshot for our zones and
// known PTR names, by forwarding for everything else — for the clients
// the filter allows; others get REFUSED for those names.
type handler struct {
	snap     *atomic.Pointer[snapshot]
	fwd      *forwarder // nil: forwarding is off
	clients  atomic.Pointer[clientFilter]
	m        *metrics
	log      *slog.Logger
	recurse  bool
	truncBit bool
	turn     atomic.Uint32 // rotates the order of answers
}

// ServeDNS implements miekg/dns's Handler.
func (h *handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("panic while answering a query", "panic", r, "stack", string(debug.Stack()))
			h.m.result(resultServfail)
			_ = w.WriteMsg(new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure))
		}
	}()
	udp := w.LocalAddr() != nil && strings.HasPrefix(w.LocalAddr().Network(), "udp")
	if resp := h.respond(context.Background(), req, remoteAddr(w), udp); resp != nil {
		_ = w.WriteMsg(resp)
	}
}

// remoteAddr is the client's address (invalid when unknown: not allowed).
func remoteAddr(w mdns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// respond computes the reply to client's req as it would be sent over UDP
// or TCP.
func (h *handler) respond(ctx context.Context, req *mdns.Msg, client netip.Addr, udp bool) *mdns.Msg {
	if req.Response {
		return nil
	}
	if req.Opcode != mdns.OpcodeQuery {
		h.m.result(resultNotimp)
		return h.finish(new(mdns.Msg).SetRcode(req, mdns.RcodeNotImplemented), req, udp)
	}
	if len(req.Question) != 1 {
		h.m.result(resultFormerr)
		return h.finish(new(mdns.Msg).SetRcodeFormatError(req), req, udp)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		h.m.result(resultFormerr)
		return h.finish(new(mdns.Msg).SetRcode(req, mdns.RcodeBadVers), req, udp)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	snap := h.snap.Load()
	if z := snap.zoneFor(name); z != nil {
		return h.finish(h.authoritative(req, snap, z, name), req, udp)
	}
	if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
		if nd := snap.names[name]; nd != nil && len(nd.ptr) > 0 && snap.ready {
			m := new(mdns.Msg).SetReply(req)
			m.Authoritative, m.RecursionAvailable = true, h.recurse
			m.Answer = h.rotate(nd.ptr)
			h.m.result(resultAnswer)
			return h.finish(m, req, udp)
		}
	}
	if h.fwd != nil && !h.clients.Load().allows(client) {
		h.m.result(resultRefused)
		h.m.forwardDenied.Inc()
		return h.finish(new(mdns.Msg).SetRcode(req, mdns.RcodeRefused), req, udp)
	}
	return h.forward(ctx, req, udp)
}

// authoritative answers a name in one of our zones: records, NODATA (the
// name exists without records of that type) or NXDOMAIN, with the SOA in
// the authority section of negative answers.
func (h *handler) authoritative(req *mdns.Msg, snap *snapshot, z *zoneData, name string) *mdns.Msg {
	m := new(mdns.Msg).SetReply(req)
	m.RecursionAvailable = h.recurse
	q := req.Question[0]
	if !snap.ready {
		m.Rcode = mdns.RcodeServerFailure
		h.m.result(resultServfail)
		return m
	}
	m.Authoritative = true
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		m.Rcode = mdns.RcodeRefused
		h.m.result(resultRefused)
		return m
	}
	nd := snap.names[name]
	apex := name == z.name
	switch q.Qtype {
	case mdns.TypeSOA:
		if apex {
			m.Answer = []mdns.RR{z.soa}
		}
	case mdns.TypeNS:
		if apex {
			m.Answer = append([]mdns.RR(nil), z.ns...)
			m.Extra = append([]mdns.RR(nil), z.nsExtra...)
		}
	case mdns.TypeAXFR, mdns.TypeIXFR:
		m.Rcode = mdns.RcodeRefused
		h.m.result(resultRefused)
		return m
	case mdns.TypeANY:
		if apex {
			m.Answer = append([]mdns.RR{z.soa}, z.ns...)
		}
		if nd != nil {
			m.Answer = append(m.Answer, nd.all()...)
		}
	case mdns.TypeA:
		if nd != nil {
			m.Answer = h.rotate(nd.a)
		}
	case mdns.TypeAAAA:
		if nd != nil {
			m.Answer = h.rotate(nd.aaaa)
		}
	case mdns.TypeSRV:
		if nd != nil {
			m.Answer = h.rotate(nd.srv)
			m.Extra = append([]mdns.RR(nil), nd.extra...)
		}
	case mdns.TypePTR:
		if nd != nil {
			m.Answer = h.rotate(nd.ptr)
		}
	}
	if len(m.Answer) > 0 {
		h.m.result(resultAnswer)
		return m
	}
	m.Ns = []mdns.RR{z.soa}
	if apex || nd != nil || snap.ents[name] != nil {
		h.m.result(resultNodata)
		return m
	}
	m.Rcode = mdns.RcodeNameError
	h.m.result(resultNXDomain)
	return m
}

// rotate returns rrs starting at a different record each call: the simple
// load spreading Mesos-DNS does by shuffling.
func (h *handler) rotate(rrs []mdns.RR) []mdns.RR {
	n := len(rrs)
	switch n {
	case 0:
		return nil
	case 1:
		return rrs[:1:1] // shared, never appended to nor modified
	}
	out := make([]mdns.RR, n)
	k := int(h.turn.Add(1) % uint32(n))
	copy(out, rrs[k:])
	copy(out[n-k:], rrs[:k])
	return out
}

// forward sends req to the upstreams and relays the answer.
func (h *handler) forward(ctx context.Context, req *mdns.Msg, udp bool) *mdns.Msg {
	if h.fwd == nil {
		h.m.result(resultRefused)
		m := new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
		m.RecursionAvailable = false
		return h.finish(m, req, udp)
	}
	resp, err := h.fwd.exchange(ctx, req, udp)
	if errors.Is(err, errBusy) {
		h.m.forwardBusy.Inc()
	}
	if err != nil {
		h.log.Debug("forwarding failed", "name", req.Question[0].Name, "error", err)
		h.m.result(resultServfail)
		return h.finish(new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure), req, udp)
	}
	h.m.result(resultForwarded)
	resp.Id = req.Id
	if udp {
		resp.Truncate(maxUDPSize(req))
		if !h.truncBit {
			resp.Truncated = false
		}
	}
	return resp
}

// finish adds EDNS when the query had it and cuts the answer to what the
// client can receive, setting TC (unless SetTruncateBit is off, as
// Mesos-DNS allows).
func (h *handler) finish(m, req *mdns.Msg, udp bool) *mdns.Msg {
	if req.IsEdns0() != nil {
		m.SetEdns0(ednsSize, false)
	}
	size := mdns.MaxMsgSize
	if udp {
		size = maxUDPSize(req)
	}
	m.Truncate(size)
	if !h.truncBit {
		m.Truncated = false
	}
	return m
}

// maxUDPSize is what the client said it can receive over UDP.
func maxUDPSize(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() > mdns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return mdns.MinMsgSize
}

package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/dns/records"
)

// forwarder relays queries for names outside our zones to upstream
// servers: over UDP when the client came over UDP (retrying over TCP when
// the upstream's answer is truncated), over TCP otherwise, trying the
// upstreams in order. A forward has one deadline for all the upstreams it
// tries (each gets an equal share of what is left), and at most
// cap(slots) forwards wait for upstreams at once.
type forwarder struct {
	def      []string            // "ip:port"
	zones    map[string][]string // lower-case FQDN zone → upstreams
	udp      *mdns.Client
	tcp      *mdns.Client
	deadline time.Duration
	slots    chan struct{}
}

func newForwarder(def []string, zoneResolvers map[string][]string, deadline time.Duration, maxInFlight int) *forwarder {
	f := &forwarder{
		def:      def,
		zones:    map[string][]string{},
		udp:      &mdns.Client{Net: "udp", Timeout: deadline, UDPSize: mdns.MaxMsgSize},
		tcp:      &mdns.Client{Net: "tcp", Timeout: deadline},
		deadline: deadline,
		slots:    make(chan struct{}, maxInFlight),
	}
	for zone, rs := range zoneResolvers {
		var ups []string
		for _, r := range rs {
			if a, err := upstreamAddr(r); err == nil {
				ups = append(ups, a)
			}
		}
		f.zones[mdns.Fqdn(strings.ToLower(zone))] = ups
	}
	return f
}

// upstreams picks the servers for a name: those of the longest matching
// zone in ZoneResolvers, else the default ones.
func (f *forwarder) upstreams(name string) []string {
	best, ups := "", f.def
	for zone, rs := range f.zones {
		if records.InZone(name, zone) && len(zone) > len(best) {
			best, ups = zone, rs
		}
	}
	return ups
}

var (
	errNoUpstream = errors.New("no upstream server for this name")
	errBusy       = errors.New("too many forwarded queries in flight")
)

func (f *forwarder) exchange(ctx context.Context, req *mdns.Msg, udp bool) (*mdns.Msg, error) {
	ups := f.upstreams(strings.ToLower(req.Question[0].Name))
	if len(ups) == 0 {
		return nil, errNoUpstream
	}
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		return nil, errBusy
	}
	ctx, cancel := context.WithTimeout(ctx, f.deadline)
	defer cancel()
	end, _ := ctx.Deadline()
	var errs []error
	for i, up := range ups {
		share, cancelOne := context.WithTimeout(ctx, time.Until(end)/time.Duration(len(ups)-i))
		resp, err := f.exchangeOne(share, req.Copy(), up, udp)
		cancelOne()
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (f *forwarder) exchangeOne(ctx context.Context, req *mdns.Msg, up string, udp bool) (*mdns.Msg, error) {
	if udp {
		resp, _, err := f.udp.ExchangeContext(ctx, req, up)
		if err == nil && !resp.Truncated {
			return resp, nil
		}
		if err != nil && (resp == nil || !resp.Truncated) {
			return nil, err
		}
		// Truncated: ask again over TCP for the whole answer.
	}
	resp, _, err := f.tcp.ExchangeContext(ctx, req, up)
	return resp, err
}

// hasUpstreams says whether any name can be forwarded.
func (f *forwarder) hasUpstreams() bool {
	if len(f.def) > 0 {
		return true
	}
	for _, ups := range f.zones {
		if len(ups) > 0 {
			return true
		}
	}
	return false
}

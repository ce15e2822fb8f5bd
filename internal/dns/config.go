package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/tabbynet/tabby/internal/dns/records"
)

// Config is the configuration of `tabby dns`. Field names are Mesos-DNS's
// (records/config.go), so a Mesos-DNS config.json loads unchanged: JSON
// keys match them case-insensitively. Fields Mesos-DNS has that Tabby does
// not use (ZooKeeper detection, Mesos authentication) are accepted and
// ignored. Defaults are Mesos-DNS's except where noted.
type Config struct {
	// RefreshSeconds is how often the Mesos master state is polled.
	// Tabby default 1 (Mesos-DNS: 60); fractions are allowed.
	RefreshSeconds float64
	// Port and Listener are where DNS is served (53, 0.0.0.0).
	Port     int
	Listener string
	// Timeout bounds one forwarded query in seconds (5): every upstream it
	// tries shares this deadline.
	Timeout int
	// StateTimeoutSeconds bounds one fetch of the master state.
	// Tabby default 10 (Mesos-DNS: 300).
	StateTimeoutSeconds int
	// HTTPPort and HTTPListener are where the HTTP API is served (8123;
	// Tabby default 127.0.0.1, Mesos-DNS: 0.0.0.0: the API enumerates every
	// record, so it stays on loopback unless asked).
	HTTPPort     int `json:"HttpPort"`
	HTTPListener string
	// TTL of the records in Domain (60).
	TTL int32
	// SOA record fields of Domain. SOAMname defaults to "ns1.<Domain>.",
	// SOARname to "root.ns1.<Domain>.".
	SOARefresh uint32
	SOARetry   uint32
	SOAExpire  uint32
	SOAMinttl  uint32
	SOAMname   string
	SOARname   string
	// Masters are the Mesos masters, "host:port" or a URL
	// ("http://10.0.0.1:5050"); the first that answers is read.
	Masters []string
	// Resolvers are the upstream DNS servers, "ip" or "ip:port".
	Resolvers []string
	// ZoneResolvers maps a zone to the upstreams used for names in it.
	ZoneResolvers map[string][]string
	// IPSources is the ordered list of task IP sources: netinfo, host,
	// mesos, docker. Tabby default netinfo,host (container IPs first;
	// Mesos-DNS: netinfo,mesos,host; DC/OS: host,netinfo).
	IPSources []string
	// Domain is the Mesos domain ("mesos").
	Domain string
	// Zk is accepted for compatibility; Tabby reads Masters only.
	Zk string
	// RecurseOn sets the RA bit of answers in our zones (true).
	RecurseOn bool
	// DNSOn, HTTPOn turn the DNS and HTTP servers on (true).
	DNSOn  bool `json:"DnsOn"`
	HTTPOn bool `json:"HttpOn"`
	// ExternalOn forwards names outside our zones to Resolvers (true).
	ExternalOn bool
	// EnforceRFC952 makes labels of at most 24 characters (false).
	EnforceRFC952 bool
	// EnumerationOn serves /v1/enumerate (true).
	EnumerationOn bool
	// SRVRecordDefaultWeight is the weight of every SRV record (1).
	SRVRecordDefaultWeight uint16
	// SetTruncateBit sets TC on answers cut to fit UDP. Tabby default true
	// (Mesos-DNS: false; DC/OS sets true).
	SetTruncateBit bool

	// DCOSDomain is the zone of the DC/OS names (Tabby extension;
	// "dcos.thisdcos.directory", "" to turn them off).
	DCOSDomain string
	// DCOSTTL is the TTL of DC/OS names (5).
	DCOSTTL int32

	// ForwardAllow are the client networks (CIDRs) names outside our zones
	// are forwarded for, besides loopback and the networks derived from
	// the datastore: every IPPool's CIDR and every Node's BGP address
	// network (Tabby extension). Other clients get REFUSED for those
	// names; our zones are answered for anyone.
	ForwardAllow []string
	// ForwardAllowAny forwards for every client: an open resolver, as
	// Mesos-DNS (false).
	ForwardAllowAny bool
	// MaxForwardsInFlight bounds the forwarded queries waiting for an
	// upstream at once (256); a query over the bound gets SERVFAIL.
	MaxForwardsInFlight int
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		RefreshSeconds:         1,
		Port:                   53,
		Listener:               "0.0.0.0",
		Timeout:                5,
		StateTimeoutSeconds:    10,
		HTTPPort:               8123,
		HTTPListener:           "127.0.0.1",
		TTL:                    60,
		SOARefresh:             60,
		SOARetry:               600,
		SOAExpire:              86400,
		SOAMinttl:              60,
		IPSources:              []string{records.SourceNetinfo, records.SourceHost},
		Domain:                 "mesos",
		RecurseOn:              true,
		DNSOn:                  true,
		HTTPOn:                 true,
		ExternalOn:             true,
		EnumerationOn:          true,
		SRVRecordDefaultWeight: 1,
		SetTruncateBit:         true,
		DCOSDomain:             "dcos.thisdcos.directory",
		DCOSTTL:                5,
		MaxForwardsInFlight:    DefaultMaxForwardsInFlight,
	}
}

// DefaultMaxForwardsInFlight is Config.MaxForwardsInFlight's default.
const DefaultMaxForwardsInFlight = 256

// ParseConfig reads a Mesos-DNS style JSON config over the defaults.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	if err := json.Unmarshal(data, &c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Config{}, fmt.Errorf("config field %s: a JSON %s is not a %s", te.Field, te.Value, te.Type)
		}
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Normalize lower-cases names and fills in derived defaults (the SOA names).
func (c *Config) Normalize() {
	c.Domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(c.Domain)), ".")
	c.DCOSDomain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(c.DCOSDomain)), ".")
	if c.SOAMname == "" {
		c.SOAMname = "ns1." + c.Domain
	}
	if c.SOARname == "" {
		c.SOARname = "root." + c.SOAMname
	}
	c.SOAMname = mdns.Fqdn(strings.ToLower(c.SOAMname))
	// Like Mesos-DNS, accept an e-mail address for the responsible person.
	c.SOARname = mdns.Fqdn(strings.ToLower(strings.TrimRight(strings.ReplaceAll(c.SOARname, "@", "."), ".")))
	for i, s := range c.IPSources {
		c.IPSources[i] = strings.ToLower(strings.TrimSpace(s))
	}
}

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s: %v %s", field, v, why))
	}
	if c.RefreshSeconds <= 0 {
		bad("RefreshSeconds", c.RefreshSeconds, "must be more than 0")
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("Port", c.Port, "is not a port")
	}
	if c.HTTPPort < 0 || c.HTTPPort > 65535 {
		bad("HttpPort", c.HTTPPort, "is not a port")
	}
	if c.Timeout <= 0 {
		bad("Timeout", c.Timeout, "must be more than 0 seconds")
	}
	if c.StateTimeoutSeconds <= 0 {
		bad("StateTimeoutSeconds", c.StateTimeoutSeconds, "must be more than 0 seconds")
	}
	if c.TTL < 0 {
		bad("TTL", c.TTL, "must not be negative")
	}
	if c.DCOSTTL < 0 {
		bad("DCOSTTL", c.DCOSTTL, "must not be negative")
	}
	if _, ok := mdns.IsDomainName(c.Domain); !ok || c.Domain == "" {
		bad("Domain", strconv.Quote(c.Domain), "is not a domain name")
	}
	if c.DCOSDomain != "" {
		if _, ok := mdns.IsDomainName(c.DCOSDomain); !ok {
			bad("DCOSDomain", strconv.Quote(c.DCOSDomain), "is not a domain name")
		}
	}
	for field, v := range map[string]string{"SOAMname": c.SOAMname, "SOARname": c.SOARname} {
		if _, ok := mdns.IsDomainName(v); !ok || v == "." {
			bad(field, strconv.Quote(v), "is not a domain name")
		}
	}
	if len(c.IPSources) == 0 {
		bad("IPSources", "[]", "must name at least one source (netinfo, host, mesos, docker)")
	}
	for _, s := range c.IPSources {
		switch s {
		case records.SourceNetinfo, records.SourceHost, records.SourceMesos, records.SourceDocker:
		default:
			bad("IPSources", strconv.Quote(s), "is not an IP source (netinfo, host, mesos, docker)")
		}
	}
	if _, err := netip.ParseAddr(c.Listener); err != nil {
		bad("Listener", strconv.Quote(c.Listener), "is not an IP address")
	}
	if _, err := netip.ParseAddr(c.HTTPListener); err != nil {
		bad("HTTPListener", strconv.Quote(c.HTTPListener), "is not an IP address")
	}
	for _, r := range c.Resolvers {
		if _, err := upstreamAddr(r); err != nil {
			bad("Resolvers", strconv.Quote(r), err.Error())
		}
	}
	for zone, rs := range c.ZoneResolvers {
		if _, ok := mdns.IsDomainName(zone); !ok {
			bad("ZoneResolvers", strconv.Quote(zone), "is not a domain name")
		}
		for _, r := range rs {
			if _, err := upstreamAddr(r); err != nil {
				bad("ZoneResolvers["+zone+"]", strconv.Quote(r), err.Error())
			}
		}
	}
	for _, m := range c.Masters {
		if _, _, err := masterURL(m); err != nil {
			bad("Masters", strconv.Quote(m), err.Error())
		}
	}
	for _, n := range c.ForwardAllow {
		if _, err := parseClientNet(n); err != nil {
			bad("ForwardAllow", strconv.Quote(n), "is not a CIDR or IP address")
		}
	}
	if c.MaxForwardsInFlight < 1 {
		bad("MaxForwardsInFlight", c.MaxForwardsInFlight, "must be at least 1")
	}
	return errors.Join(errs...)
}

// upstreamAddr turns "10.0.0.2" or "10.0.0.2:5353" into "ip:port".
func upstreamAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", errors.New("is not an IP address or IP:port")
	}
	return ap.String(), nil
}

// masterURL turns "10.0.0.1:5050" or "http://10.0.0.1:5050/" into the
// base URL to fetch from and the master's "host:port".
func masterURL(s string) (base, hostPort string, err error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", errors.New("is not host:port or a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", errors.New("must be an http or https URL")
	}
	if u.Hostname() == "" {
		return "", "", errors.New("has no host")
	}
	port := u.Port()
	if port == "" {
		port = "5050"
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u.String(), net.JoinHostPort(u.Hostname(), port), nil
}

// upstreams returns the default upstreams as "ip:port".
func (c *Config) upstreams() []string {
	var out []string
	for _, r := range c.Resolvers {
		if a, err := upstreamAddr(r); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *Config) refresh() time.Duration {
	return time.Duration(c.RefreshSeconds * float64(time.Second))
}

// recordsConfig is what records.Build needs.
func (c *Config) recordsConfig(nsAddrs []netip.Addr) records.Config {
	rc := records.Config{
		Domain:        c.Domain,
		TTL:           uint32(c.TTL),
		IPSources:     c.IPSources,
		EnforceRFC952: c.EnforceRFC952,
		SRVWeight:     c.SRVRecordDefaultWeight,
		SOA: records.SOA{
			Mname: c.SOAMname, Rname: c.SOARname,
			Refresh: c.SOARefresh, Retry: c.SOARetry, Expire: c.SOAExpire, Minttl: c.SOAMinttl,
		},
		NSAddrs:    nsAddrs,
		DCOSDomain: c.DCOSDomain,
		DCOSTTL:    uint32(c.DCOSTTL),
	}
	for _, m := range c.Masters {
		if _, hp, err := masterURL(m); err == nil {
			rc.Masters = append(rc.Masters, hp)
		}
	}
	return rc
}

package dns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The mesos-dns.json DC/OS writes on its masters loads unchanged.
func TestParseConfigDCOS(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{
  "zk": "zk://zk-1.zk:2181,zk-2.zk:2181,zk-3.zk:2181/mesos",
  "refreshSeconds": 30,
  "ttl": 60,
  "domain": "mesos",
  "port": 61053,
  "resolvers": ["169.254.169.253"],
  "timeout": 1,
  "listener": "0.0.0.0",
  "email": "root.mesos-dns.mesos",
  "IPSources": ["host", "netinfo"],
  "SetTruncateBit": true,
  "masters": ["10.0.4.10:5050"],
  "httpon": true,
  "dnson": true,
  "httpport": 8123,
  "mesosAuthentication": "iam",
  "iamConfigFile": "/run/dcos/etc/mesos-dns/iam.json",
  "stateTimeoutSeconds": 300
}`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := DefaultConfig()
	want.Zk = "zk://zk-1.zk:2181,zk-2.zk:2181,zk-3.zk:2181/mesos"
	want.RefreshSeconds, want.Port, want.Timeout, want.StateTimeoutSeconds = 30, 61053, 1, 300
	want.Resolvers = []string{"169.254.169.253"}
	want.IPSources = []string{"host", "netinfo"}
	want.Masters = []string{"10.0.4.10:5050"}
	want.SOAMname, want.SOARname = "ns1.mesos.", "root.ns1.mesos."
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got := cfg.upstreams(); !cmp.Equal(got, []string{"169.254.169.253:53"}) {
		t.Errorf("upstreams %v", got)
	}
	rc := cfg.recordsConfig(nil)
	if !cmp.Equal(rc.Masters, []string{"10.0.4.10:5050"}) || rc.TTL != 60 || rc.DCOSTTL != 5 {
		t.Errorf("records config %+v", rc)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want string
	}{
		{"syntax", `{"ttl": }`, "config: invalid character"},
		{"type", `{"ttl": "sixty"}`, "config field TTL: a JSON string is not a int32"},
		{"ip source", `{"IPSources": ["netinfo", "rkt"]}`, `IPSources: "rkt" is not an IP source`},
		{"no ip source", `{"IPSources": []}`, "IPSources: [] must name at least one source"},
		{"resolver", `{"resolvers": ["dns.google"]}`, `Resolvers: "dns.google" is not an IP address or IP:port`},
		{"zone resolver", `{"zoneResolvers": {"corp": ["x"]}}`, `ZoneResolvers[corp]: "x"`},
		{"master", `{"masters": ["ftp://10.0.0.1"]}`, `Masters: "ftp://10.0.0.1" must be an http or https URL`},
		{"port", `{"port": 70000}`, "Port: 70000 is not a port"},
		{"listener", `{"listener": "localhost"}`, `Listener: "localhost" is not an IP address`},
		{"domain", `{"domain": ""}`, `Domain: "" is not a domain name`},
		{"refresh", `{"refreshSeconds": 0}`, "RefreshSeconds: 0 must be more than 0"},
		{"ttl", `{"ttl": -1}`, "TTL: -1 must not be negative"},
		{"two errors", `{"ttl": -1, "port": -1}`, "Port: -1 is not a port\nTTL: -1"},
		{"forward allow", `{"ForwardAllow": ["10.0.0.0/8", "corp"]}`, `ForwardAllow: "corp" is not a CIDR or IP address`},
		{"max forwards", `{"MaxForwardsInFlight": 0}`, "MaxForwardsInFlight: 0 must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.json))
			if err == nil {
				cfg.Normalize()
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMasterURL(t *testing.T) {
	for _, tc := range []struct{ in, base, hostPort string }{
		{"10.0.0.1:5050", "http://10.0.0.1:5050", "10.0.0.1:5050"},
		{"http://10.0.0.1:5050/", "http://10.0.0.1:5050", "10.0.0.1:5050"},
		{"https://leader.mesos", "https://leader.mesos", "leader.mesos:5050"},
		{"http://[fd00::1]:5050", "http://[fd00::1]:5050", "[fd00::1]:5050"},
		{"http://user:pw@10.0.0.1:5050/mesos", "http://user:pw@10.0.0.1:5050/mesos", "10.0.0.1:5050"},
	} {
		base, hp, err := masterURL(tc.in)
		if err != nil || base != tc.base || hp != tc.hostPort {
			t.Errorf("masterURL(%q) = %q, %q, %v; want %q, %q", tc.in, base, hp, err, tc.base, tc.hostPort)
		}
	}
}

// The safe defaults: the HTTP API on loopback, forwarding only for the
// cluster's clients, a bound on forwards in flight.
func TestSafeDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.HTTPListener != "127.0.0.1" || c.ForwardAllowAny || len(c.ForwardAllow) != 0 || c.MaxForwardsInFlight != DefaultMaxForwardsInFlight {
		t.Errorf("defaults: HTTPListener %q, ForwardAllowAny %v, ForwardAllow %v, MaxForwardsInFlight %d; want 127.0.0.1, false, none, %d",
			c.HTTPListener, c.ForwardAllowAny, c.ForwardAllow, c.MaxForwardsInFlight, DefaultMaxForwardsInFlight)
	}
}

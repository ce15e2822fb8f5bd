package ctl

import (
	"strings"
	"testing"
	"time"
)

// TestDNSPolicyFlags: the forwarder is off without --dns-policy-listen;
// bad values are refused naming the flag and the value.
func TestDNSPolicyFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags dnsPolicyFlags
		on    bool
		want  string // substring of the error; "" = valid
	}{
		{"off", dnsPolicyFlags{}, false, ""},
		{"on", dnsPolicyFlags{listen: []string{"10.0.0.5:1053"}, upstreams: []string{"10.0.0.2"}, grace: time.Minute}, true, ""},
		{"dual", dnsPolicyFlags{listen: []string{"10.0.0.5:1053", "[fd00::5]:1053"}, upstreams: []string{"10.0.0.2:53"}}, true, ""},
		{"upstream without listen", dnsPolicyFlags{upstreams: []string{"10.0.0.2"}}, false, "--dns-policy-upstream needs --dns-policy-listen"},
		{"bad listen", dnsPolicyFlags{listen: []string{"node:53"}, upstreams: []string{"10.0.0.2"}}, false, `--dns-policy-listen: "node:53" is not an address:port`},
		{"three", dnsPolicyFlags{listen: []string{"10.0.0.5:1", "10.0.0.6:1", "10.0.0.7:1"}, upstreams: []string{"10.0.0.2"}}, false, "at most one address per IP family"},
		{"no upstream", dnsPolicyFlags{listen: []string{"10.0.0.5:1053"}}, false, "dns policy upstreams: none given"},
		{"bad upstream", dnsPolicyFlags{listen: []string{"10.0.0.5:1053"}, upstreams: []string{"dns.example"}}, false, `"dns.example:53" is not an IP address`},
		{"bad max", dnsPolicyFlags{listen: []string{"10.0.0.5:1053"}, upstreams: []string{"10.0.0.2"}, maxElements: -1}, false, "max elements: -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, on, err := tc.flags.config()
			if tc.want == "" {
				if err != nil || on != tc.on {
					t.Fatalf("config() = on %v, %v; want on %v, nil", on, err, tc.on)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("config() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

package api

import (
	"strings"
	"testing"
)

// TestDomainPatternMatch: Calico Enterprise's examples ("Domain name
// matching"), each way round.
func TestDomainPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"microsoft.com", []string{"microsoft.com", "MICROSOFT.com.", "microsoft.com."}, []string{"www.microsoft.com", "microsoft.co", "com"}},
		{"*.google.com", []string{"www.google.com", "www.ipv6.google.com", "WWW.Google.Com."}, []string{"google.com", "google.com.evil", "xgoogle.com", ".google.com"}},
		{"www.*.com", []string{"www.sun.com", "www.apple.com", "www.a.b.com"}, []string{"www.com", "sun.com", "www.sun.org"}},
		{"www.google.*", []string{"www.google.net", "www.google.io", "www.google.co.uk"}, []string{"www.google", "google.net"}},
		{"update.*.mycompany.com", []string{"update.tools.mycompany.com", "update.secure.suite.mycompany.com"}, []string{"update.mycompany.com", "tools.mycompany.com"}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			d, err := ParseDomainPattern(tc.pattern)
			if err != nil {
				t.Fatalf("ParseDomainPattern(%q) error = %v", tc.pattern, err)
			}
			for _, n := range tc.yes {
				if !d.Match(n) {
					t.Errorf("%q.Match(%q) = false, want true", tc.pattern, n)
				}
			}
			for _, n := range tc.no {
				if d.Match(n) {
					t.Errorf("%q.Match(%q) = true, want false", tc.pattern, n)
				}
			}
		})
	}
}

func TestDomainPatternRefused(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"*.*.mycompany.com", "more than one wildcard"},
		{"www.g*.com", "whole label"},
		{"*", "matches every name"},
		{"a..b", "label"},
		{"-x.com", "label \"-x\""},
		{"a b.com", "label \"a b\""},
		{"api.example.com/x", "label"},
		{strings.Repeat("a.", 130) + "com", "longer than 253"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseDomainPattern(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDomainPattern(%q) error = %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestValidateDomains: bad input names the field and the value.
func TestValidateDomains(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error; none: valid
	}{
		{"egress allow", `kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {egress: [{action: Allow, protocol: TCP, destination: {ports: [443], domains: [api.example.com, "*.example.org"]}}]}`, nil},
		{"network set", `kind: GlobalNetworkSet
metadata: {name: s, labels: {a: b}}
spec: {nets: [192.0.2.0/24], allowedEgressDomains: [db.com, "*.db.com"]}`, nil},
		{"bad name", `kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {egress: [{action: Allow, destination: {domains: [ok.com, "www.g*.com"]}}]}`,
			[]string{`spec.egress[0].destination.domains[1]: "www.g*.com"`}},
		{"ingress", `kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec: {ingress: [{action: Allow, destination: {domains: [a.com]}}]}`,
			[]string{"spec.ingress[0].destination.domains: is not allowed in an ingress rule"}},
		{"source", `kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec: {egress: [{action: Allow, source: {domains: [a.com]}}]}`,
			[]string{"spec.egress[0].source.domains: is not allowed"}},
		{"deny", `kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {egress: [{action: Deny, destination: {domains: [a.com]}}]}`,
			[]string{`spec.egress[0].destination.domains: is not allowed with action "Deny"`}},
		{"with nets", `kind: GlobalNetworkPolicy
metadata: {name: p}
spec: {egress: [{action: Allow, destination: {nets: [10.0.0.0/8], selector: a == 'b', domains: [a.com]}}]}`,
			[]string{"cannot be combined with destination.nets", "cannot be combined with destination.selector"}},
		{"set bad name", `kind: NetworkSet
metadata: {name: s, namespace: default}
spec: {allowedEgressDomains: ["*.*.db.com"]}`,
			[]string{`spec.allowedEgressDomains[0]: "*.*.db.com" has more than one wildcard`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte("apiVersion: projectcalico.org/v3\n" + tc.yaml))
			if err != nil {
				if len(tc.want) == 0 {
					t.Fatalf("Decode() error = %v", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Decode() error = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			err = Validate(rs[0])
			switch {
			case len(tc.want) == 0 && err != nil:
				t.Fatalf("Validate() error = %v, want nil", err)
			case len(tc.want) > 0 && err == nil:
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

// FuzzDomainPattern: parsing never panics; a parsed pattern prints to
// text that parses to the same pattern; a pattern without a wildcard
// matches its own text; Match never panics on any name.
func FuzzDomainPattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.example.org", "www.*.com", "a..b", "*"} {
		f.Add(s, "www.example.com")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		d, err := ParseDomainPattern(pattern)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again, err := ParseDomainPattern(d.String())
		if err != nil || again.String() != d.String() || again.Wild != d.Wild {
			t.Fatalf("%q: reparse of %q = %v, %v", pattern, d.String(), again, err)
		}
		if d.Wild < 0 && !d.Match(d.String()) {
			t.Fatalf("%q does not match its own name", pattern)
		}
		if d.Wild >= 0 && d.Match(strings.Join(append(append([]string{}, d.Labels[:d.Wild]...), d.Labels[d.Wild+1:]...), ".")) {
			t.Fatalf("%q matched a name without a label for its wildcard", pattern)
		}
		_ = d.Match(name)
	})
}

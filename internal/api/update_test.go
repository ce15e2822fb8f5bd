package api

import (
	"testing"
)

func TestValidateUpdate(t *testing.T) {
	pool := func(name, cidr string, bs int) *IPPool {
		return &IPPool{ObjectMeta: ObjectMeta{Name: name}, Spec: IPPoolSpec{CIDR: cidr, BlockSize: bs}}
	}
	withNAT := pool("p", "10.0.0.0/16", 0)
	withNAT.Spec.NATOutgoing = true
	tests := []struct {
		name     string
		old, new Resource
		field    string
		detail   string
	}{
		{"pool mutable fields", pool("p", "10.0.0.0/16", 26), withNAT, "", ""},
		{"default block size equals explicit", pool("p", "10.0.0.0/16", 0), pool("p", "10.0.0.0/16", 26), "", ""},
		{"pool cidr", pool("p", "10.0.0.0/16", 26), pool("p", "10.1.0.0/16", 26), "spec.cidr", `cannot change (from "10.0.0.0/16" to "10.1.0.0/16")`},
		{"pool block size", pool("p", "10.0.0.0/16", 0), pool("p", "10.0.0.0/16", 28), "spec.blockSize", "cannot change (from 26 to 28)"},
		{"name", pool("p", "10.0.0.0/16", 0), pool("q", "10.0.0.0/16", 0), "metadata.name", `cannot change (from "p" to "q")`},
		{"namespace", &NetworkSet{ObjectMeta: ObjectMeta{Name: "s"}}, &NetworkSet{ObjectMeta: ObjectMeta{Name: "s", Namespace: "prod"}}, "metadata.namespace", `from "default" to "prod"`},
		{"kind", pool("p", "10.0.0.0/16", 0), &Profile{ObjectMeta: ObjectMeta{Name: "p"}}, "kind", "IPPool cannot become Profile"},
		{"other kinds", &Profile{ObjectMeta: ObjectMeta{Name: "p"}}, &Profile{ObjectMeta: ObjectMeta{Name: "p", Labels: map[string]string{"a": "b"}}}, "", ""},
		{"nil", nil, pool("p", "10.0.0.0/16", 0), "", "no resource"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateUpdate(tc.old, tc.new)
			if tc.detail == "no resource" {
				if err == nil {
					t.Errorf("ValidateUpdate() = nil; want an error")
				}
				return
			}
			checkProblem(t, err, tc.field, tc.detail)
		})
	}
}

func TestValidateUpdateLeavesInputs(t *testing.T) {
	old := &IPPool{ObjectMeta: ObjectMeta{Name: "p"}, Spec: IPPoolSpec{CIDR: "10.0.0.0/16"}}
	_ = ValidateUpdate(old, old)
	if old.Spec.BlockSize != 0 || old.Spec.IPIPMode != "" {
		t.Errorf("ValidateUpdate() changed its input: %+v", old.Spec)
	}
}

func TestPoolsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"10.0.0.0/16", "10.0.0.0/16", true},
		{"10.0.0.0/8", "10.1.0.0/16", true},
		{"10.1.0.0/16", "10.0.0.0/8", true},
		{"10.0.0.0/16", "10.1.0.0/16", false},
		{"10.0.0.0/24", "10.0.1.0/24", false},
		{"10.0.0.128/25", "10.0.0.0/25", false},
		{"fd00::/48", "fd00:0:0:1::/64", true},
		{"fd00::/48", "fd01::/48", false},
		{"10.0.0.0/8", "::ffff:10.0.0.0/104", false},
		{"10.0.0.0/8", "not-a-cidr", false},
		{"10.0.0.5/8", "10.200.0.0/16", true},
	}
	for _, tc := range tests {
		t.Run(tc.a+" "+tc.b, func(t *testing.T) {
			if got := PoolsOverlap(tc.a, tc.b); got != tc.want {
				t.Errorf("PoolsOverlap(%q, %q) = %t; want %t", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestCheckPoolOverlap(t *testing.T) {
	pool := func(name, cidr string) *IPPool {
		return &IPPool{ObjectMeta: ObjectMeta{Name: name}, Spec: IPPoolSpec{CIDR: cidr}}
	}
	existing := []*IPPool{pool("a", "10.0.0.0/16"), nil, pool("b", "fd00::/48")}
	tests := []struct {
		name string
		p    *IPPool
		want string
	}{
		{"disjoint", pool("c", "10.1.0.0/16"), ""},
		{"inside", pool("c", "10.0.4.0/24"), `pool "c" (10.0.4.0/24) overlaps pool "a" (10.0.0.0/16)`},
		{"covering v6", pool("c", "fd00::/16"), `pool "c" (fd00::/16) overlaps pool "b" (fd00::/48)`},
		{"own previous version", pool("a", "10.0.0.0/16"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPoolOverlap(existing, tc.p)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("CheckPoolOverlap() = %q; want %q", got, tc.want)
			}
		})
	}
}

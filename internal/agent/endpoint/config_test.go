package endpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

func TestHostIfName(t *testing.T) {
	tests := []struct {
		name        string
		containerID string
		ifName      string
	}{
		{name: "mesos uuid", containerID: "6d5a6b41-2d55-4c6b-9a3e-5f0f1f3c2b7e", ifName: "eth0"},
		{name: "docker id", containerID: strings.Repeat("ab", 32), ifName: "eth1"},
		{name: "short", containerID: "c", ifName: "e"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := HostIfName(tc.containerID, tc.ifName)
			sum := sha256.Sum256([]byte(tc.containerID + "/" + tc.ifName))
			want := "tby" + hex.EncodeToString(sum[:])[:11]
			if got != want {
				t.Errorf("HostIfName(%q, %q) = %q, want %q", tc.containerID, tc.ifName, got, want)
			}
			if len(got) != 14 {
				t.Errorf("len(%q) = %d, want 14", got, len(got))
			}
			if err := validIfName(got); err != nil {
				t.Errorf("HostIfName gave an invalid name: %v", err)
			}
			if seen[got] {
				t.Errorf("HostIfName(%q, %q) = %q collides with an earlier case", tc.containerID, tc.ifName, got)
			}
			seen[got] = true
		})
	}
	// The ifname is part of the hash: two interfaces of one container differ.
	if HostIfName("c1", "eth0") == HostIfName("c1", "eth1") {
		t.Errorf("HostIfName ignores the interface name")
	}
	// The separator keeps ("a/b","c") and ("a","b/c") apart only if ifnames
	// cannot contain "/", which validIfName enforces.
	if err := validIfName("b/c"); err == nil {
		t.Errorf("validIfName accepted a name with '/'")
	}
}

func TestValidate(t *testing.T) {
	ok := Config{ContainerID: "c1", IfName: "eth0", NetNS: "/var/run/netns/x", Addrs: []netip.Prefix{netip.MustParsePrefix("10.65.0.1/26")}}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "ok", mutate: func(*Config) {}},
		{name: "ok dual stack", mutate: func(c *Config) {
			c.Addrs = append(c.Addrs, netip.MustParsePrefix("fd00::1/128"))
			c.MTU = 1280
		}},
		{name: "ok host override", mutate: func(c *Config) { c.HostIfName = "tbyabc" }},
		{name: "no container id", mutate: func(c *Config) { c.ContainerID = "" }, wantErr: "ContainerID"},
		{name: "no ifname", mutate: func(c *Config) { c.IfName = "" }, wantErr: "IfName: must not be empty"},
		{name: "long ifname", mutate: func(c *Config) { c.IfName = "eth0123456789012" }, wantErr: `IfName: "eth0123456789012": longer than 15`},
		{name: "slash ifname", mutate: func(c *Config) { c.IfName = "eth/0" }, wantErr: `IfName: "eth/0"`},
		{name: "space ifname", mutate: func(c *Config) { c.IfName = "eth 0" }, wantErr: `IfName: "eth 0"`},
		{name: "dot ifname", mutate: func(c *Config) { c.IfName = ".." }, wantErr: `IfName: ".."`},
		{name: "no netns", mutate: func(c *Config) { c.NetNS = "" }, wantErr: "NetNS"},
		{name: "host override without prefix", mutate: func(c *Config) { c.HostIfName = "cali12345" }, wantErr: `HostIfName "cali12345": must start with "tby"`},
		{name: "host override too long", mutate: func(c *Config) { c.HostIfName = "tby0123456789abc" }, wantErr: "HostIfName"},
		{name: "no addrs", mutate: func(c *Config) { c.Addrs = nil }, wantErr: "Addrs: at least one"},
		{name: "invalid addr", mutate: func(c *Config) { c.Addrs = []netip.Prefix{{}} }, wantErr: "Addrs[0]"},
		{name: "gateway addr", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("169.254.1.1/32")} }, wantErr: "Addrs[0] 169.254.1.1/32"},
		{name: "v6 link-local", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("fe80::1/128")} }, wantErr: "Addrs[0] fe80::1/128"},
		{name: "multicast", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("224.0.0.1/32")} }, wantErr: "Addrs[0]"},
		{name: "unspecified", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }, wantErr: "Addrs[0]"},
		{name: "loopback", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} }, wantErr: "Addrs[0]"},
		{name: "mapped", mutate: func(c *Config) { c.Addrs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.1/128")} }, wantErr: "IPv4-mapped"},
		{name: "duplicate", mutate: func(c *Config) {
			c.Addrs = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/26"), netip.MustParsePrefix("10.0.0.1/32")}
		}, wantErr: "Addrs[1] 10.0.0.1/32: duplicate"},
		{name: "mtu low", mutate: func(c *Config) { c.MTU = 67 }, wantErr: "MTU 67"},
		{name: "mtu negative", mutate: func(c *Config) { c.MTU = -1 }, wantErr: "MTU -1"},
		{name: "mtu high", mutate: func(c *Config) { c.MTU = 65536 }, wantErr: "MTU 65536"},
		{name: "mtu below ipv6 minimum", mutate: func(c *Config) {
			c.Addrs = []netip.Prefix{netip.MustParsePrefix("fd00::1/128")}
			c.MTU = 1279
		}, wantErr: "MTU 1279: below the IPv6 minimum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Addrs = append([]netip.Prefix(nil), ok.Addrs...)
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestWithDefaultsAndPrefixes(t *testing.T) {
	c := Config{ContainerID: "c1", IfName: "eth0", Addrs: []netip.Prefix{
		netip.MustParsePrefix("10.65.0.1/26"), netip.MustParsePrefix("fd00::1/64"),
	}}.withDefaults()
	if c.MTU != DefaultMTU || c.HostIfName != HostIfName("c1", "eth0") {
		t.Errorf("withDefaults: MTU %d, HostIfName %q; want %d, %q", c.MTU, c.HostIfName, DefaultMTU, HostIfName("c1", "eth0"))
	}
	got := c.hostPrefixes()
	want := []netip.Prefix{netip.MustParsePrefix("10.65.0.1/32"), netip.MustParsePrefix("fd00::1/128")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("hostPrefixes = %v, want %v", got, want)
	}
}

// FuzzValidate feeds arbitrary interface names and addresses through
// Validate and HostIfName: no panic, and anything accepted is usable.
func FuzzValidate(f *testing.F) {
	f.Add("c1", "eth0", "10.0.0.1/32", 1500)
	f.Add("", "eth0", "fd00::1/128", 1280)
	f.Add("c", "eth/0", "169.254.1.1/32", 0)
	f.Add("c", "x", "::ffff:1.2.3.4/128", 70000)
	f.Fuzz(func(t *testing.T, id, ifName, addr string, mtu int) {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return
		}
		c := Config{ContainerID: id, IfName: ifName, NetNS: "/x", Addrs: []netip.Prefix{p}, MTU: mtu}
		if err := c.Validate(); err != nil {
			return
		}
		c = c.withDefaults()
		if err := validIfName(c.HostIfName); err != nil {
			t.Fatalf("accepted config gives bad host name: %v", err)
		}
		if c.MTU < minMTU || c.MTU > maxMTU {
			t.Fatalf("accepted MTU %d", c.MTU)
		}
		for _, hp := range c.hostPrefixes() {
			if !hp.IsSingleIP() {
				t.Fatalf("hostPrefixes gave %s", hp)
			}
		}
	})
}

package records

import (
	"net/netip"
	"strings"
	"testing"
	"testing/quick"
)

// The cases come from Mesos-DNS's records/labels tests, so that Tabby makes
// the same labels from the same names.
func TestRFC1123(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"a":                               "a",
		"-":                               "",
		"a---":                            "a",
		"---a---":                         "a",
		"---a---b":                        "a---b",
		"a.b.c.d.e":                       "a-b-c-d-e",
		"a.c.d_de.":                       "a-c-d-de",
		"abc123":                          "abc123",
		"-abc123":                         "abc123",
		"abc123-":                         "abc123",
		"abc-123":                         "abc-123",
		"abc--123":                        "abc--123",
		"r29f.dev.angrypigs":              "r29f-dev-angrypigs",
		"4abc123":                         "4abc123",
		"-4abc123":                        "4abc123",
		"89fdgsf---gs7-fgs--d7fddg-123":   "89fdgsf---gs7-fgs--d7fddg-123",
		"89fdgsf---gs7-fgs--d7fddg---123": "89fdgsf---gs7-fgs--d7fddg---123",
		"89fdgsf---gs7-fgs--d7fddg-":      "89fdgsf---gs7-fgs--d7fddg",
		"fd%gsf---gs7-f$gs--d7fddg-123":   "fdgsf---gs7-fgs--d7fddg-123",
		"fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123":   "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
		"$$fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-123":   "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
		"%%fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789---123": "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
		"##fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-":      "fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789",
		"hello--------------------------------------------------------f":         "hello--------------------------------------------------------f",
		"hello----------------------------------------------------------f":       "hellof",
		"myapp.subgroup.outergroup": "myapp-subgroup-outergroup",
		"Ünïcödé_App":               "ncd-app",
	} {
		if got := RFC1123(in); got != want {
			t.Errorf("RFC1123(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRFC952(t *testing.T) {
	for in, want := range map[string]string{
		"4abc123":                                   "abc123",
		"-4abc123":                                  "abc123",
		"fd%gsf---gs7-f$gs--d7fddg-123":             "fdgsf---gs7-fgs--d7fddg1",
		"89fdgsf---gs7-fgs--d7fddg-123":             "fdgsf---gs7-fgs--d7fddg1",
		"89fdgsf---gs7-fgs--d7fddg---123":           "fdgsf---gs7-fgs--d7fddg1",
		"89fdgsf---gs7-fgs--d7fddg-":                "fdgsf---gs7-fgs--d7fddg",
		"chronos with a space AND MIXED CASE-2.0.1": "chronoswithaspaceandmixe",
		"chronos with a space AND----------MIXED--": "chronoswithaspaceandmixe",
		"hello--------------------------------------------------------f": "hellof",
	} {
		if got := RFC952(in); got != want {
			t.Errorf("RFC952(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLabelProperties(t *testing.T) {
	for name, fn := range map[string]LabelFunc{"RFC1123": RFC1123, "RFC952": RFC952} {
		max := 63
		if name == "RFC952" {
			max = 24
		}
		prop := func(s string) bool {
			l := fn(s)
			return len(l) <= max && !strings.HasPrefix(l, "-") &&
				strings.IndexFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) < 0
		}
		if err := quick.Check(prop, &quick.Config{MaxCount: 20000}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDomainFrag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		fn   LabelFunc
		want string
	}{
		{"pod_123$abc.marathon-0.6.0-dev.mesos", RFC1123, "pod-123abc.marathon-0.6.0-dev.mesos"},
		{"pod_123$abc.marathon-0.6.0-dev.mesos", RFC952, "pod-123abc.marathon-0.dev.mesos"},
		{"", RFC1123, ""},
		{"...", RFC1123, ""},
		{"a..c.e", RFC1123, "a.c.e"},
		{"(@ host . com", RFC1123, "host.com"},
		{"MiXeDcase.CoM", RFC1123, "mixedcase.com"},
		{"Cassandra.Prod_1", RFC1123, "cassandra.prod-1"},
	} {
		if got := DomainFrag(tc.in, ".", tc.fn); got != tc.want {
			t.Errorf("DomainFrag(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTaskHash(t *testing.T) {
	// Expected values from Mesos-DNS's generator tests.
	for id, want := range map[string]string{
		"test": "iffe9",
		"liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5": "4dfjd",
		"liquor-store.b71166c1-562f-11e4-a088-c20493233aa5": "zasmd",
		"car-store.43758382-562f-11e4-a088-c20493233aa5":    "zinaz",
	} {
		if got := TaskHash(id); got != want {
			t.Errorf("TaskHash(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestSlaveIDTail(t *testing.T) {
	for in, want := range map[string]string{
		"20140803-125133-3041283216-5050-2410-0":  "0",
		"6d6c5d3e-1f22-4a1b-b8f2-1c2d3e4f5a6b-S1": "s1",
		"node1":            "node1",
		"host.example.com": "host-example-com",
		"lab-host-2":       "2",
	} {
		if got := slaveIDTail(in); got != want {
			t.Errorf("slaveIDTail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppTaskName(t *testing.T) {
	for in, want := range map[string]string{
		"/outergroup/subgroup/myapp": "myapp.subgroup.outergroup",
		"/g/app":                     "app.g",
		"app":                        "app",
		"":                           "",
		"//":                         "",
	} {
		if got := AppTaskName(in); got != want {
			t.Errorf("AppTaskName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3":         "3.2.1.10.in-addr.arpa.",
		"::ffff:10.1.2.3":  "3.2.1.10.in-addr.arpa.",
		"2001:db8::567:89": "9.8.0.0.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
	} {
		if got := ReverseName(netip.MustParseAddr(in)); got != want {
			t.Errorf("ReverseName(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"app.marathon.mesos.", true},
		{"_http._app._tcp.marathon.mesos.", true},
		{"app.marathon.mesos", false},
		{".", false},
		{"a..mesos.", false},
		{"Upper.mesos.", false},
		{"sp ace.mesos.", false},
		{strings.Repeat("a", 64) + ".mesos.", false},
		{strings.Repeat("a.", 127) + "mesos.", false},
	} {
		if err := checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

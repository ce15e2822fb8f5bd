package dns

import (
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// When the master's state turns bad or the master goes away, the last good
// records stay served, and the logs and metrics say so.
func TestMesosStateFailuresKeepLastGood(t *testing.T) {
	ts, fm := startMesosServer(t, nil)
	const name = "myapp-subgroup-outergroup.marathon.mesos."
	for _, mode := range []string{"malformed", "wrongtype", "noleader", "500"} {
		t.Run(mode, func(t *testing.T) {
			before := metric(t, ts.http, `tabby_dns_mesos_state_fetches_total{result="error"}`)
			fm.mode.Store(mode)
			waitFor(t, "a failed fetch", func() bool {
				return metric(t, ts.http, `tabby_dns_mesos_state_fetches_total{result="error"}`) > before
			})
			if v := metric(t, ts.http, "tabby_dns_mesos_state_stale"); v != 1 {
				t.Errorf("tabby_dns_mesos_state_stale = %v, want 1", v)
			}
			if got := rrStrings(query(t, ts.dns, "udp", name, mdns.TypeA).Answer); len(got) != 1 {
				t.Errorf("%s = %v, want the last good answer", name, got)
			}
			fm.mode.Store("ok")
			waitFor(t, "recovery", func() bool { return metric(t, ts.http, "tabby_dns_mesos_state_stale") == 0 })
		})
	}
	if log := ts.log.String(); !strings.Contains(log, "serving the last good records") || !strings.Contains(log, "read the Mesos master state") {
		t.Errorf("the log does not tell about the failure and recovery:\n%s", log)
	}

	t.Run("unreachable", func(t *testing.T) {
		fm.Close()
		before := metric(t, ts.http, `tabby_dns_mesos_state_fetches_total{result="error"}`)
		waitFor(t, "a failed fetch", func() bool {
			return metric(t, ts.http, `tabby_dns_mesos_state_fetches_total{result="error"}`) > before
		})
		if got := rrStrings(query(t, ts.dns, "udp", name, mdns.TypeA).Answer); len(got) != 1 {
			t.Errorf("%s = %v, want the last good answer", name, got)
		}
	})
}

// A master that is down from the start gives no Mesos names, but the
// server is ready (answers NXDOMAIN, not SERVFAIL) once it tried.
func TestMesosUnreachableAtStart(t *testing.T) {
	fm := newFakeMaster(t, nil)
	fm.mode.Store("500")
	ts := startServer(t, nil, func(c *Config) { c.Masters = []string{fm.URL} })
	if resp := query(t, ts.dns, "udp", "leader.mesos.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Errorf("rcode %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
	}
	if !strings.Contains(ts.log.String(), "no Mesos records yet") {
		t.Errorf("log does not say so:\n%s", ts.log.String())
	}
}

// The state is refetched and a change shows up.
func TestMesosStateChange(t *testing.T) {
	ts, fm := startMesosServer(t, nil)
	state := strings.Replace(string(readFixture(t)), `"ip_address": "172.29.1.5"`, `"ip_address": "172.29.1.6"`, 1)
	fm.state.Store([]byte(state))
	waitFor(t, "the new IP", func() bool {
		got := rrStrings(query(t, ts.dns, "udp", "myapp-subgroup-outergroup.marathon.mesos.", mdns.TypeA).Answer)
		return len(got) == 1 && got[0] == "A 172.29.1.6"
	})
}

package console

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/lab/labtest"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// testConsole runs `tabby console` on the master as `tabby lab up` does.
var testConsole = &lab.ConsoleConfig{Args: func(listen netip.AddrPort, datastore, dir string) []string {
	return []string{"console", "--listen", listen.String(), "--datastore", datastore, "--lab-dir", dir}
}}

// browserLab is a lab for the browser tests: three containers on two
// hosts, and a policy that lets only api reach db.
type browserLab struct {
	lab   *lab.Lab
	store datastore.Store
	cs    map[string]lab.Container
	// weps are the containers' endpoint names, by container.
	weps map[string]string
}

func upBrowserLab(t *testing.T) *browserLab {
	t.Helper()
	testenv.Privileged(t)
	testenv.NeedTool(t, "ip")
	cfg := lab.Config{Name: labtest.Name("cons"), Nodes: 2, BinDir: labtest.Binaries(t), ReadyTimeout: 60 * time.Second,
		Logger: labtest.Logger(t, slog.LevelWarn), Console: testConsole, AgentArgs: []string{"--flow-window", "1s"}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := &browserLab{lab: l, cs: map[string]lab.Container{}, weps: map[string]string{}}
	t.Cleanup(func() {
		if b.store != nil {
			b.store.Close()
		}
		if err := lab.Down(context.Background(), "", l.Name(), nil); err != nil {
			t.Errorf("lab down %s: %v", l.Name(), err)
		}
		entries, _ := os.ReadDir(netns.RunDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), lab.NamespacePrefix(l.Name())) {
				t.Errorf("lab %s left namespace %s", l.Name(), e.Name())
			}
		}
	})
	if b.store, err = l.Store(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []lab.RunSpec{
		{Name: "web", Node: "h1", Labels: []lab.KeyValue{{Key: "app", Value: "web"}}},
		{Name: "api", Node: "h1", Labels: []lab.KeyValue{{Key: "app", Value: "api"}}},
		{Name: "db", Node: "h2", Labels: []lab.KeyValue{{Key: "app", Value: "db"}}},
	} {
		s.Command = []string{"sleep", "infinity"}
		c, err := l.Run(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		b.cs[c.Name] = *c
	}
	c := datastore.NewClient(b.store)
	weps, _, err := c.List(ctx, "WorkloadEndpoint", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range weps {
		w := r.(*api.WorkloadEndpoint)
		for name, ct := range b.cs {
			if len(w.Spec.IPNetworks) > 0 && w.Spec.IPNetworks[0] == ct.IPs[0].String() {
				b.weps[name] = w.Name
			}
		}
	}
	if len(b.weps) != 3 {
		t.Fatalf("endpoints of the containers: %v, want web, api and db", b.weps)
	}
	order := 10.0
	pol := &api.NetworkPolicy{TypeMeta: api.TypeMeta{APIVersion: api.APIVersion, Kind: "NetworkPolicy"},
		ObjectMeta: api.ObjectMeta{Name: "db-allow-api", Namespace: "default"},
		Spec: api.NetworkPolicySpec{Order: &order, Selector: "app == 'db'", Types: []string{"Ingress"},
			Ingress: []api.Rule{{Action: "Allow", Source: api.EntityRule{Selector: "app == 'api'"}}}}}
	if _, err := c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	// Staged, never enforced: it would deny api → db.
	stagedOrder := 5.0
	staged := &api.StagedNetworkPolicy{TypeMeta: api.TypeMeta{APIVersion: api.APIVersion, Kind: "StagedNetworkPolicy"},
		ObjectMeta: api.ObjectMeta{Name: "db-lockdown", Namespace: "default"},
		Spec: api.StagedNetworkPolicySpec{NetworkPolicySpec: api.NetworkPolicySpec{Order: &stagedOrder, Selector: "app == 'db'", Types: []string{"Ingress"},
			Ingress: []api.Rule{{Action: "Deny", Source: api.EntityRule{Selector: "app == 'api'"}}}}}}
	if _, err := c.Create(ctx, staged); err != nil {
		t.Fatal(err)
	}
	return b
}

// console serves a console of the lab on loopback, as `tabby --lab NAME
// console` does: the agents and the matrix reached from inside the lab.
func (b *browserLab) console(t *testing.T) string {
	t.Helper()
	srv, err := New(Config{Store: b.store, AgentClient: lab.HTTPClientIn(b.lab.State().Master.Namespace),
		Matrix: b.lab.Probe, Title: "lab " + b.lab.Name()})
	if err != nil {
		t.Fatal(err)
	}
	return serveLoopback(t, srv.Handler())
}

// TestPrivilegedBrowserLab loads every page of the console in chromium
// against a live lab and checks what each shows: the nodes and their
// established BGP sessions, the containers' addresses and labels, the
// policy with the one endpoint it selects, the pool's use and blocks, and
// the reachability matrix the policy makes. The console tabby lab up
// started on the master answers too.
func TestPrivilegedBrowserLab(t *testing.T) {
	b := upBrowserLab(t)
	ctx := newBrowser(t)
	base := b.console(t)
	nodes := []string{"master", "h1", "h2"}

	t.Run("nodes", func(t *testing.T) {
		// A 3-node mesh: 2 sessions per node, all established.
		s := waitPage(t, ctx, base+"/nodes", 60*time.Second, func(string) bool {
			return read(t, ctx, 10*time.Second, chromedp.Evaluate[int](`document.querySelectorAll('tr.session[data-state="up"]').length`)) == 6
		})
		if m := missingFrom(s, nodes...); len(m) > 0 {
			t.Errorf("nodes page: no %q in\n%s", m, s)
		}
		states := read(t, ctx, 10*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr.session")).map(r => r.closest("section").id + " " + r.dataset.peer + " " + r.dataset.state)`))
		if len(states) != 6 {
			t.Errorf("BGP sessions shown: %q, want 6 (2 per node)", states)
		}
		for _, st := range states {
			if !strings.HasSuffix(st, " up") {
				t.Errorf("BGP session %s: not up", st)
			}
		}
		for _, n := range b.lab.State().AgentNodes() {
			if !strings.Contains(s, n.IP.String()) {
				t.Errorf("nodes page: no address %s of %s", n.IP, n.Name)
			}
		}
		screenshot(t, ctx, "console-nodes.png")
	})

	t.Run("overview", func(t *testing.T) {
		s := pageText(t, ctx, base+"/")
		if m := missingFrom(s, "3 (3 agents answering)", "6 of 6 up", "3 workload, 0 host", "default: 1", "1 staged"); len(m) > 0 {
			t.Errorf("overview: no %q in\n%s", m, s)
		}
	})

	t.Run("endpoints", func(t *testing.T) {
		s := pageText(t, ctx, base+"/endpoints")
		for name, c := range b.cs {
			if m := missingFrom(s, c.IPs[0].String(), b.weps[name], "app="+name); len(m) > 0 {
				t.Errorf("endpoints page: no %q of %s in\n%s", m, name, s)
			}
		}
		screenshot(t, ctx, "console-endpoints.png")
	})

	t.Run("policies", func(t *testing.T) {
		pageText(t, ctx, base+"/policies")
		sel := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS(`tr.policy[data-policy="default/db-allow-api"] td.selected`)))
		if want := "default/" + b.weps["db"]; strings.TrimSpace(sel) != want {
			t.Errorf("policy default/db-allow-api selects %q, want %q", sel, want)
		}
		tier := read(t, ctx, 10*time.Second, chromedp.Evaluate[string](`document.querySelector('tr.policy[data-policy="default/db-allow-api"]').closest("section").id`))
		if tier != "tier-default" {
			t.Errorf("policy default/db-allow-api is shown in %q, want tier-default", tier)
		}
		screenshot(t, ctx, "console-policies.png")
		// Its page names the rule and the endpoint.
		browse(t, ctx, 30*time.Second, chromedp.Click(chromedp.CSS(`tr.policy[data-policy="default/db-allow-api"] a`)), chromedp.WaitVisible(chromedp.CSS("h1.policy-name")))
		s := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS("main")))
		if m := missingFrom(s, "NetworkPolicy default/db-allow-api", "selector app == 'api'", b.cs["db"].IPs[0].String()); len(m) > 0 {
			t.Errorf("policy page: no %q in\n%s", m, s)
		}
	})

	t.Run("ipam", func(t *testing.T) {
		u, err := ipam.New(b.store, nil).Usage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s := pageText(t, ctx, base+"/ipam")
		p := u.Pools[0]
		if m := missingFrom(s, p.CIDR.String(), p.Total.String()+" addresses in use"); len(m) > 0 {
			t.Errorf("ipam page: no %q in\n%s", m, s)
		}
		if p.InUse < 3 {
			t.Errorf("pool %s: %d addresses in use, want at least the 3 containers'", p.CIDR, p.InUse)
		}
		screenshot(t, ctx, "console-ipam.png")
		for _, blk := range p.Blocks {
			row := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS(`tr.block[data-block="`+blk.CIDR.String()+`"]`)))
			if !strings.Contains(row, blk.Node) || !strings.Contains(row, blk.CIDR.String()) {
				t.Errorf("block %s (node %s, %d in use): row %q", blk.CIDR, blk.Node, blk.InUse, row)
			}
		}
	})

	t.Run("matrix", func(t *testing.T) {
		want := map[string]string{"web>db": "deny", "api>db": "allow", "db>web": "allow", "web>api": "allow"}
		var got map[string]string
		waitPage(t, ctx, base+"/matrix?proto=tcp&port=80", 60*time.Second, func(string) bool {
			got = read(t, ctx, 10*time.Second, chromedp.Evaluate[map[string]string](`(() => {
				const to = Array.from(document.querySelectorAll("table.matrix th.to")).map(th => th.textContent);
				const m = {};
				for (const tr of document.querySelectorAll("table.matrix tbody tr")) {
					tr.querySelectorAll("td.cell").forEach((td, i) => { m[tr.dataset.from + ">" + to[i]] = td.className.replace("cell ", ""); });
				}
				return m;
			})()`))
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		})
		for k, v := range want {
			if got[k] != v {
				t.Errorf("matrix %s: %q, want %q (all: %v)", k, got[k], v, got)
			}
		}
		screenshot(t, ctx, "console-matrix.png")
	})

	// The matrix's probes made the traffic: web → db was denied, at the
	// end of tier default (db-allow-api selects db and admits only api).
	t.Run("flows", func(t *testing.T) {
		// The agents name endpoints by pod, Mesos task or, as here, the
		// endpoint's own name.
		url := base + "/flows?action=deny&endpoint=" + b.weps["db"] + "&since=10m"
		row := `//tr[contains(@class, "action-deny")][td[5][contains(., "default/` + b.weps["web"] + `")]][td[6][contains(., "default/` + b.weps["db"] + `")]]`
		found := false
		s := waitPage(t, ctx, url, 60*time.Second, func(string) bool {
			n := read(t, ctx, 10*time.Second, chromedp.Evaluate[int](`document.evaluate('count(`+row+`)', document, null, XPathResult.NUMBER_TYPE, null).numberValue`))
			found = n > 0
			return found
		})
		if !found {
			t.Fatalf("flows page: no denied flow web → db in\n%s\nall flows:\n%s", s, pageText(t, ctx, base+"/flows?since=10m"))
		}
		if m := missingFrom(s, "h2", "ingress", "tcp", b.cs["db"].IPs[0].Addr().String()+":80", "default: NetworkPolicy default/db-allow-api (end of tier)", "app=web", "app=db"); len(m) > 0 {
			t.Errorf("flows page: no %q in\n%s", m, s)
		}
		screenshot(t, ctx, "console-flows.png")
		// From the matrix: the denied cell web → db leads to its denied
		// flows, and the flow to the policy that denied it (live off, so
		// that the row stays put).
		browse(t, ctx, 90*time.Second,
			chromedp.Navigate(base+"/matrix"),
			chromedp.Click(chromedp.Search(`//tr[@data-from="web"]/td[contains(@class, "deny")]/a`)),
			chromedp.WaitVisible(chromedp.Search(row)),
		)
		loc := read(t, ctx, 10*time.Second, chromedp.Evaluate[string](`location.search`))
		if m := missingFrom(loc, "action=deny", "src=default%2F"+b.weps["web"], "dst=default%2F"+b.weps["db"]); len(m) > 0 {
			t.Errorf("the matrix's denied cell leads to /flows%s: no %q", loc, m)
		}
		if n := read(t, ctx, 10*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("tr.flow").length`)); n < 1 {
			t.Errorf("the flows of the denied pair: %d rows", n)
		}
		if n := read(t, ctx, 10*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("tr.flow:not(.action-deny)").length`)); n != 0 {
			t.Errorf("the denied flows of the pair include %d not denied", n)
		}
		browse(t, ctx, 30*time.Second,
			chromedp.Click(chromedp.CSS("#live")),
			chromedp.Click(chromedp.Search(row+`//a[contains(@class, "policy-link")]`)),
			chromedp.WaitVisible(chromedp.CSS("h1.policy-name")),
		)
		h1 := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS("h1.policy-name")))
		if h1 != "NetworkPolicy default/db-allow-api" {
			t.Errorf("the denied flow's policy link leads to %q, want NetworkPolicy default/db-allow-api", h1)
		}
		sel := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS("main table.endpoints")))
		if !strings.Contains(sel, b.weps["db"]) {
			t.Errorf("the policy page does not show db as selected:\n%s", sel)
		}
	})

	// api → db passed (the matrix says so) but the staged db-lockdown
	// would have denied it: the flow shows the pending verdict and links
	// to the staged policy.
	t.Run("staged", func(t *testing.T) {
		pageText(t, ctx, base+"/policies")
		sel := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS(`tr.policy[data-kind="StagedNetworkPolicy"][data-policy="default/db-lockdown"] td.selected`)))
		if want := "default/" + b.weps["db"]; strings.TrimSpace(sel) != want {
			t.Errorf("staged default/db-lockdown selects %q, want %q", sel, want)
		}
		url := base + "/flows?action=allow&endpoint=" + b.weps["db"] + "&since=10m"
		row := `//tr[contains(@class, "action-allow")][td[3][.="ingress"]][td[5][contains(., "default/` + b.weps["api"] + `")]]`
		var cell string
		waitPage(t, ctx, url, 60*time.Second, func(string) bool {
			cells := read(t, ctx, 10*time.Second, chromedp.Evaluate[[]string](`(() => {
				const r = document.evaluate('`+row+`', document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
				return r ? [r.cells[8].textContent] : [];
			})()`))
			if len(cells) > 0 {
				cell = cells[0]
			}
			return cell != ""
		})
		if want := "deny: default: StagedNetworkPolicy default/db-lockdown rule 0"; strings.TrimSpace(cell) != want {
			t.Fatalf("the allowed flow api → db: pending %q, want %q", cell, want)
		}
		browse(t, ctx, 30*time.Second,
			chromedp.Click(chromedp.CSS("#live")),
			chromedp.Click(chromedp.Search(row+`/td[9]/a`)),
			chromedp.WaitVisible(chromedp.CSS("h1.policy-name")),
		)
		if h1 := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS("h1.policy-name"))); h1 != "StagedNetworkPolicy default/db-lockdown" {
			t.Errorf("the pending policy link leads to %q, want StagedNetworkPolicy default/db-lockdown", h1)
		}
	})

	t.Run("lab up console", func(t *testing.T) {
		addr, ok := b.lab.ConsoleAddr()
		if !ok {
			t.Fatal("the lab runs no console on its master")
		}
		hc := lab.HTTPClientIn(b.lab.State().Master.Namespace)
		for path, wants := range map[string][]string{
			"/nodes":     {"h1", "h2", `data-state="up"`},
			"/endpoints": {b.cs["db"].IPs[0].String()},
			"/matrix":    {`class="cell deny"`},
		} {
			resp, err := hc.Get("http://" + addr.String() + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := missingFrom(string(body), wants...); resp.StatusCode != 200 || len(m) > 0 {
				t.Errorf("the master's console %s: %s, no %q in\n%s", path, resp.Status, m, body)
			}
		}
	})
}

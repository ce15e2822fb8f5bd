package console

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tabbynet/tabby/internal/testenv"
)

// The browser tests drive Debian's chromium, headless, with chromedp. The
// browser only ever talks to the console's loopback address: every host
// name resolves to nothing, and background networking is off.

var screenshots = flag.String("console.screenshots", "", "directory to write the browser tests' screenshots to (docs/ keeps one)")

// serveLoopback serves h on 127.0.0.1 (a random port) until the test ends.
func serveLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// newBrowser starts a headless chromium for the test; the context ends it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := testenv.NeedTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// Nothing but the console: no name resolves, no proxy is asked.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root otherwise
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Start the browser now, so that its start-up is not charged to a page.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browse runs actions with a bound.
func browse(t *testing.T, ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// read runs one action that returns a value, with a bound.
func read[T any](t *testing.T, ctx context.Context, d time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// waitJS evaluates expr until it is true (or d passes); errors while the
// page navigates count as false.
func waitJS(t *testing.T, ctx context.Context, d time.Duration, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: %s is not true after %s (last error: %v)", expr, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pageText loads url and returns the text of its main element.
func pageText(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	browse(t, ctx, 90*time.Second, chromedp.Navigate(url))
	return read(t, ctx, 30*time.Second, chromedp.Text(chromedp.CSS("main")))
}

// waitPage reloads url until ok accepts its text (or d passes) and
// returns the last text.
func waitPage(t *testing.T, ctx context.Context, url string, d time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := pageText(t, ctx, url)
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Second)
	}
}

// containsAll reports the wants missing from s.
func missingFrom(s string, wants ...string) []string {
	var out []string
	for _, w := range wants {
		if !strings.Contains(s, w) {
			out = append(out, w)
		}
	}
	return out
}

// screenshot writes the page to the screenshots directory, when asked.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png := read(t, ctx, 30*time.Second, chromedp.FullScreenshot(100))
	p := filepath.Join(*screenshots, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// TestBrowserFlows loads the flows page in chromium against a console
// whose node's agent serves recorded flows: the rows show, the deny filter
// keeps the denied flow only, the denied flow's policy link leads to the
// policy that denied it, and a flow the agent reports later appears
// without a reload (the page's script).
func TestBrowserFlows(t *testing.T) {
	ctx := newBrowser(t)
	ts, agent := newTestConsole(t, "testdata/flows.ndjson")
	base := serveLoopback(t, ts.Config.Handler)
	url := base + "/flows?since=2026-12-07T22:00:00Z"

	s := pageText(t, ctx, url)
	if m := missingFrom(s, "default/web", "default/db", "10.244.1.2:40000", "deny", "default: NetworkPolicy default/db-only-api rule 0"); len(m) > 0 {
		t.Fatalf("flows page: no %q in\n%s", m, s)
	}
	// Filter: the form's action select.
	browse(t, ctx, 30*time.Second,
		chromedp.SetValue(chromedp.CSS(`select[name="action"]`), "deny"),
		chromedp.Click(chromedp.CSS(`form.filter button[type="submit"]`)),
	)
	// The new page, loaded (not the old one's rows).
	waitJS(t, ctx, 30*time.Second, `location.search.includes("action=deny") && document.readyState === "complete" && document.querySelector("tr.flow") !== null`)
	rows := read(t, ctx, 10*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr.flow")).map(r => r.dataset.action)`))
	if len(rows) != 1 || rows[0] != "deny" {
		t.Errorf("flows with action=deny: rows %q, want one deny", rows)
	}
	// Follow the denied flow to its policy.
	browse(t, ctx, 30*time.Second,
		chromedp.Click(chromedp.CSS(`tr.action-deny a.policy-link`)),
		chromedp.WaitVisible(chromedp.CSS(`h1.policy-name`)),
	)
	h1 := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS(`h1.policy-name`)))
	if h1 != "NetworkPolicy default/db-only-api" {
		t.Errorf("the denied flow's policy link leads to %q, want NetworkPolicy default/db-only-api", h1)
	}
	// Live: a new flow appears without reloading.
	pageText(t, ctx, url)
	agent.mu.Lock()
	agent.flows = append(agent.flows, []byte(`{"start":"2026-12-07T23:01:00Z","end":"2026-12-07T23:01:02Z","node":"h1","proto":"tcp","srcIP":"10.244.1.9","srcPort":1,"dstIP":"10.244.2.3","dstPort":80,"direction":"ingress","src":{"namespace":"default","name":"late"},"dst":{"namespace":"default","name":"db"},"action":"allow","packets":1,"bytes":1}`+"\n")...)
	agent.mu.Unlock()
	browse(t, ctx, 20*time.Second, chromedp.WaitVisible(chromedp.Search(`//td[contains(., "default/late")]`)))
	live := read(t, ctx, 10*time.Second, chromedp.Text(chromedp.CSS("#flow-rows")))
	if !strings.Contains(live, "default/late") {
		t.Errorf("the live flows show no new flow:\n%s", live)
	}
}

package dns

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
	"github.com/tabbynet/tabby/internal/testenv"
)

// docExample is one `dig` line of docs/dns.md and the "# …" lines under it.
type docExample struct {
	line int
	args []string
	want []string
}

// docExamples reads the dig commands of the ```sh blocks of a Markdown file.
func docExamples(t *testing.T, path string) []docExample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docExample
	inSh := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			inSh = line == "```sh"
		case !inSh:
		case strings.HasPrefix(line, "dig "):
			out = append(out, docExample{line: n, args: strings.Fields(line)[1:]})
		case strings.HasPrefix(line, "# ") && len(out) > 0:
			ex := &out[len(out)-1]
			ex.want = append(ex.want, strings.TrimPrefix(line, "# "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every dig example of docs/dns.md gives the answer shown under it, from a
// server holding the fixture master state and the endpoint web.shop.
func TestDocsExamples(t *testing.T) {
	testenv.NeedTool(t, "dig")
	examples := docExamples(t, "../../docs/dns.md")
	if len(examples) < 20 {
		t.Fatalf("found %d dig examples in docs/dns.md, expected more: did the format change?", len(examples))
	}
	store := memstore.New()
	c := datastore.NewClient(store)
	mustCreate(t, c, testNode("agent-1", "10.0.1.11"))
	mustCreate(t, c, testEndpoint("shop", "web-1", "agent-1", "web", "172.29.1.20"))
	fm := newFakeMaster(t, readFixture(t))
	ts := startServer(t, store, func(cfg *Config) { cfg.Masters = []string{fm.URL} })

	for _, ex := range examples {
		var args []string
		short := false
		for _, a := range ex.args {
			if a == "+short" {
				short = true
			}
			if !strings.HasPrefix(a, "@") { // the server is the test's
				args = append(args, a)
			}
		}
		out := dig(t, ts.dns, args...)
		if short {
			if diff := cmp.Diff(shortLines(strings.Join(ex.want, "\n")), shortLines(out)); diff != "" {
				t.Errorf("docs/dns.md:%d: dig %s (-documented +got):\n%s", ex.line, strings.Join(ex.args, " "), diff)
			}
			continue
		}
		for _, w := range ex.want {
			if !strings.Contains(out, w) {
				t.Errorf("docs/dns.md:%d: dig %s: output lacks %q:\n%s", ex.line, strings.Join(ex.args, " "), w, out)
			}
		}
	}
}

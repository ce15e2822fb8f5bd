package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcdtest"
)

// cli runs the tabby CLI in-process against one datastore.
type cli struct {
	t     *testing.T
	ds    string
	stdin string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	_, cfg := etcdtest.NewServer(t)
	return &cli{t: t, ds: strings.Join(cfg.Endpoints, ",")}
}

// run returns exit code, stdout and stderr.
func (c *cli) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--datastore", c.ds}, args...), strings.NewReader(c.stdin), &out, &errb)
	c.stdin = ""
	return code, out.String(), errb.String()
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("tabby %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (c *cli) fail(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 1 {
		c.t.Fatalf("tabby %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return errs
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const poolYAML = `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.60.0.0/16
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "8000:8080"]
`

func TestCreateReplaceApplyDelete(t *testing.T) {
	c := newCLI(t)
	f := writeFile(t, "m.yaml", poolYAML)

	if out := c.ok("create", "-f", f); !strings.Contains(out, "Successfully created 2 resource(s)") {
		t.Fatalf("create output %q", out)
	}
	if errs := c.fail("create", "-f", f); !strings.Contains(errs, "already exists") {
		t.Fatalf("second create: %q, want an 'already exists' error", errs)
	}
	if out := c.ok("create", "--skip-exists", "-f", f); !strings.Contains(out, "2 skipped") {
		t.Fatalf("create --skip-exists output %q", out)
	}
	c.ok("replace", "-f", f)
	c.ok("apply", "-f", f)

	// get: table, wide, yaml, json; namespaces.
	if out := c.ok("get", "ippools"); !strings.Contains(out, "pool-a") || !strings.Contains(out, "10.60.0.0/16") {
		t.Fatalf("get ippools: %q", out)
	}
	if out := c.ok("get", "IPPool", "-o", "wide"); !strings.Contains(out, "VXLANMODE") {
		t.Fatalf("get -o wide: %q", out)
	}
	if out := c.ok("get", "policy"); strings.Contains(out, "allow-web") {
		t.Fatalf("get policy in namespace default shows prod's policy: %q", out)
	}
	if out := c.ok("get", "networkpolicies", "-n", "prod"); !strings.Contains(out, "allow-web") {
		t.Fatalf("get -n prod: %q", out)
	}
	if out := c.ok("get", "np", "-A"); !strings.Contains(out, "prod") {
		t.Fatalf("get -A: %q", out)
	}
	y := c.ok("get", "networkpolicy", "allow-web", "-n", "prod", "-o", "yaml")
	if !strings.Contains(y, "apiVersion: tabby.dev/v1") || !strings.Contains(y, "8000:8080") || !strings.Contains(y, "resourceVersion") {
		t.Fatalf("get -o yaml: %s", y)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(c.ok("get", "ippool", "pool-a", "-o", "json")), &obj); err != nil || obj["kind"] != "IPPool" {
		t.Fatalf("get -o json: %v %v", obj, err)
	}

	// A stale resourceVersion is a conflict, never a lost update.
	stale := strings.Replace(y, "selector: app == 'web'", "selector: app == 'api'", 1)
	c.ok("apply", "-f", f) // moves the revision on
	c.stdin = stale
	if errs := c.fail("replace", "-f", "-"); !strings.Contains(errs, "conflict") {
		t.Fatalf("replace with stale resourceVersion: %q, want a conflict", errs)
	}

	if out := c.ok("delete", "networkpolicy", "allow-web", "-n", "prod"); !strings.Contains(out, "Successfully deleted 1") {
		t.Fatalf("delete: %q", out)
	}
	if errs := c.fail("delete", "networkpolicy", "allow-web", "-n", "prod"); !strings.Contains(errs, "not found") {
		t.Fatalf("delete missing: %q", errs)
	}
	c.ok("delete", "--skip-not-exists", "networkpolicy", "allow-web", "-n", "prod")
	if errs := c.fail("replace", "-f", f); !strings.Contains(errs, "not found") {
		t.Fatalf("replace of a missing resource: %q", errs)
	}
	c.ok("delete", "-f", f, "--skip-not-exists")
	if out := c.ok("get", "ippools"); strings.Contains(out, "pool-a") {
		t.Fatalf("pool still there after delete -f: %q", out)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		name string
		body string
		want string
	}{
		{"malformed yaml", "kind: IPPool\nmetadata: [\n", "document 2"},
		{"unknown kind", "apiVersion: tabby.dev/v1\nkind: Bogus\nmetadata: {name: x}\n", "Bogus"},
		{"unknown field", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.61.0.0/16, natOutgong: true}\n", "natOutgong"},
		{"bad cidr", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.61.0.0/33}\n", "10.61.0.0/33"},
		{"bad selector", "apiVersion: tabby.dev/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {selector: \"app ==\"}\n", "selector"},
		{"bad port", "apiVersion: tabby.dev/v1\nkind: NetworkPolicy\nmetadata: {name: allow-web}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [80, \"80-x\"]}\n",
			`spec.ingress[0].destination.ports[1]: "80-x" is not a port or range`},
		{"link-local pool", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 169.254.0.0/24}\n", "169.254"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A good document first: nothing may be written when a later one is bad.
			body := "apiVersion: tabby.dev/v1\nkind: GlobalNetworkSet\nmetadata: {name: first}\nspec: {nets: [10.9.0.0/16]}\n---\n" + tc.body
			f := writeFile(t, "bad.yaml", body)
			errs := c.fail("apply", "-f", f)
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("error %q does not mention %q", errs, tc.want)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") > 12 {
				t.Fatalf("error is not short:\n%s", errs)
			}
			if out := c.ok("get", "globalnetworksets"); strings.Contains(out, "first") {
				t.Fatal("a document before the bad one was written")
			}
		})
	}
}

func TestPoolOverlapAndImmutableBlockSize(t *testing.T) {
	c := newCLI(t)
	c.ok("apply", "-f", writeFile(t, "a.yaml", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.62.0.0/16}\n"))
	errs := c.fail("apply", "-f", writeFile(t, "b.yaml", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.62.128.0/17}\n"))
	if !strings.Contains(errs, "overlaps") {
		t.Fatalf("overlapping pool: %q", errs)
	}
	errs = c.fail("apply", "-f", writeFile(t, "a2.yaml", "apiVersion: tabby.dev/v1\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.62.0.0/16, blockSize: 28}\n"))
	if !strings.Contains(errs, "blockSize") {
		t.Fatalf("changing blockSize: %q", errs)
	}
}

func TestUnreachableDatastoreIsOneLine(t *testing.T) {
	var out, errb bytes.Buffer
	start := time.Now()
	code := Main([]string{"--datastore", "http://127.0.0.1:1", "--timeout", "2s", "get", "ippools"}, strings.NewReader(""), &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	msg := strings.TrimSpace(errb.String())
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "http://127.0.0.1:1") {
		t.Fatalf("stderr %q: want one line naming the endpoint", msg)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestUnknownKindAndBadOutput(t *testing.T) {
	c := newCLI(t)
	if errs := c.fail("get", "bogus"); !strings.Contains(errs, `unknown resource kind "bogus"`) {
		t.Fatalf("%q", errs)
	}
	if errs := c.fail("get", "ippools", "-o", "xml"); !strings.Contains(errs, `"xml"`) {
		t.Fatalf("%q", errs)
	}
}

// TestDocsApply applies every YAML example of the README and docs/ to a
// real datastore, so the documentation cannot rot.
func TestDocsApply(t *testing.T) {
	c := newCLI(t)
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllSubmatch(b, -1) {
			c.stdin = string(m[1])
			code, out, errs := c.run("apply", "-f", "-")
			if code != 0 {
				t.Errorf("%s: yaml block %d does not apply: %s%s", f, i+1, out, errs)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no yaml examples found")
	}
	t.Logf("applied %d examples", n)
}

func TestCompletion(t *testing.T) {
	c := newCLI(t)
	out := c.ok("__complete", "get", "")
	for _, want := range []string{"ippools", "networkpolicy"} {
		if !strings.Contains(out, want) {
			t.Fatalf("completion of `get` lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Fatalf("bash completion script missing: %.200s", out)
	}
}

// TestGetShowsGoodRecordsAndNamesBadOnes: `tabby get` lists what it can
// read, names each record it cannot decode, and exits 1.
func TestGetShowsGoodRecordsAndNamesBadOnes(t *testing.T) {
	c := newCLI(t)
	c.stdin = poolYAML
	c.ok("create", "-f", "-")
	store, err := etcd.New(etcd.Config{Endpoints: strings.Split(c.ds, ","), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const bad = datastore.KeyPrefix + "ippools/broken"
	if _, err := store.Create(context.Background(), bad, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := c.run("get", "ippools")
	if code != 1 || !strings.Contains(out, "pool-a") || !strings.Contains(errs, bad) {
		t.Fatalf("get ippools with a bad record: exit %d, stdout %q, stderr %q; want exit 1, pool-a listed and %s named", code, out, errs, bad)
	}
}

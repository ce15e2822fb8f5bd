package labpolicy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/tabbynet/tabby/internal/lab/labtest"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/lab"
	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testenv"
)

// The tests run the real binaries, built once into a temporary directory.

func TestMain(m *testing.M) {
	code := m.Run()
	labtest.Cleanup()
	os.Exit(code)
}

// requirePrivileged requires what building labs needs: root and
// iproute2. Unlike internal/lab's own tests these also run with -short
// (in a smaller form) as root: they are the policy conformance suite.
func requirePrivileged(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTool(t, "ip")
}

func testBinaries(t testing.TB) string { return labtest.Binaries(t) }

// uniqueName is prefix plus 4 random hex digits (lab names are at most 8).
func uniqueName(prefix string) string { return labtest.Name(prefix) }

func testLogger(t testing.TB) *slog.Logger { return labtest.Logger(t, slog.LevelWarn) }

// world is a lab brought up for one test function, with its datastore
// client and containers.
type world struct {
	t      testing.TB
	lab    *lab.Lab
	store  datastore.Store
	client *datastore.Client
	cs     map[string]lab.Container
	// family is the address family the matrix probes and the manifest
	// templates give (4; 6 in a dual-stack lab run over IPv6).
	family int
}

// upWorld brings a lab up and removes it (checking nothing is left) when
// the test ends.
func upWorld(t testing.TB, cfg lab.Config) *world {
	t.Helper()
	cfg.BinDir = testBinaries(t)
	cfg.ReadyTimeout = 60 * time.Second
	cfg.Logger = testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab %s up in %s", l.Name(), time.Since(t0).Round(time.Millisecond))
	w := &world{t: t, lab: l, cs: map[string]lab.Container{}, family: 4}
	t.Cleanup(func() {
		if w.store != nil {
			w.store.Close()
		}
		if err := lab.Down(context.Background(), "", l.Name(), nil); err != nil {
			t.Errorf("lab down %s: %v", l.Name(), err)
		}
		if left := leftoverNamespaces(l.Name()); len(left) > 0 {
			t.Errorf("lab %s left namespaces %v", l.Name(), left)
		}
	})
	s, err := l.Store()
	if err != nil {
		t.Fatal(err)
	}
	w.store, w.client = s, datastore.NewClient(s)
	return w
}

func leftoverNamespaces(name string) []string {
	entries, _ := os.ReadDir(netns.RunDir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), lab.NamespacePrefix(name)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// run starts containers (4 at a time) that only sleep: the probes bring
// their own listeners.
func (w *world) run(specs ...lab.RunSpec) {
	w.t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 4)
		t0   = time.Now()
	)
	for _, s := range specs {
		if s.Command == nil {
			s.Command = []string{"sleep", "infinity"}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := w.lab.Run(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			w.cs[c.Name] = *c
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.t.Fatal(err)
	}
	w.t.Logf("%d containers started in %s", len(specs), time.Since(t0).Round(time.Millisecond))
}

// with is w for a subtest: helpers fail t.
func (w *world) with(t testing.TB) *world {
	c := *w
	c.t = t
	return &c
}

// ip is a container's (first IPv4) address.
func (w *world) ip(name string) netip.Addr {
	w.t.Helper()
	c, ok := w.cs[name]
	if !ok {
		w.t.Fatalf("no container %q", name)
	}
	return c.IP()
}

func (w *world) node(name string) lab.Node {
	w.t.Helper()
	n, ok := w.lab.State().Node(name)
	if !ok {
		w.t.Fatalf("no node %q", name)
	}
	return n
}

// manifest expands a manifest template: {{ip "xa"}} is a container's
// address, {{pool}} the lab's IP pool, {{nodeIP "h1"}} a node's fabric
// address, {{fabric}} the fabric subnet of rack 1 — of w.family: in an
// IPv6 world they are the IPv6 ones, and "{{ip …}}/32" is read as /128.
func (w *world) manifest(text string) []byte {
	w.t.Helper()
	st := w.lab.State()
	v6 := w.family == 6
	if v6 {
		text = strings.ReplaceAll(text, "}}/32", "}}/128")
	}
	tpl, err := template.New("manifest").Option("missingkey=error").Funcs(template.FuncMap{
		"ip": func(n string) (string, error) {
			c, ok := w.cs[n]
			if !ok {
				return "", fmt.Errorf("no container %q", n)
			}
			if v6 {
				return c.IP6().String(), nil
			}
			return c.IP().String(), nil
		},
		"pool": func() string {
			if v6 {
				return st.Pool6.String()
			}
			return st.Pool.String()
		},
		"nodeIP": func(n string) string {
			if v6 {
				return w.node(n).IP6.Addr().String()
			}
			return w.node(n).IP.Addr().String()
		},
		"fabric": func() string {
			if v6 {
				return w.node("h1").IP6.Masked().String()
			}
			return w.node("h1").IP.Masked().String()
		},
	}).Parse(text)
	if err != nil {
		w.t.Fatalf("manifest template: %v", err)
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, nil); err != nil {
		w.t.Fatalf("manifest template: %v", err)
	}
	return b.Bytes()
}

// objRef names a resource for deletion.
type objRef struct{ kind, namespace, name string }

// apply decodes a manifest (template) and creates or replaces each
// resource, as `tabby apply` does; it returns what to delete afterwards.
func (w *world) apply(manifest string) []objRef {
	w.t.Helper()
	if strings.TrimSpace(manifest) == "" {
		return nil
	}
	rs, err := api.Decode(w.manifest(manifest))
	if err != nil {
		w.t.Fatalf("decode manifest: %v\n%s", err, manifest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var refs []objRef
	for _, r := range rs {
		if _, _, err := w.client.Apply(ctx, r); err != nil {
			w.t.Fatalf("apply %s %s: %v", r.KindInfo().Kind, r.GetObjectMeta().Name, err)
		}
		m := r.GetObjectMeta()
		refs = append(refs, objRef{r.KindInfo().Kind, m.Namespace, m.Name})
	}
	return refs
}

// remove deletes what apply returned (in reverse order).
func (w *world) remove(refs []objRef) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		if _, err := w.client.Delete(ctx, r.kind, r.namespace, r.name, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			w.t.Errorf("delete %s %s/%s: %v", r.kind, r.namespace, r.name, err)
		}
	}
}

// endpoint finds a container's WorkloadEndpoint.
func (w *world) endpoint(ctx context.Context, name string) (*api.WorkloadEndpoint, error) {
	c, ok := w.cs[name]
	if !ok {
		return nil, fmt.Errorf("no container %q", name)
	}
	list, _, err := w.client.List(ctx, "WorkloadEndpoint", c.Namespace)
	if err != nil {
		return nil, err
	}
	for _, r := range list {
		if e := r.(*api.WorkloadEndpoint); e.Spec.ContainerID == c.ContainerID {
			return e, nil
		}
	}
	return nil, fmt.Errorf("no WorkloadEndpoint of container %s (%s) in namespace %s", name, c.ContainerID, c.Namespace)
}

// setPorts replaces the ports of a container's WorkloadEndpoint (as an
// orchestrator that knows its named ports would write them) and returns
// the old ones.
func (w *world) setPorts(name string, ports []api.WorkloadEndpointPort) []api.WorkloadEndpointPort {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		e, err := w.endpoint(ctx, name)
		if err != nil {
			w.t.Fatal(err)
		}
		old := e.Spec.Ports
		e.Spec.Ports = ports
		_, err = w.client.Update(ctx, e)
		if err == nil {
			return old
		}
		if !errors.Is(err, datastore.ErrConflict) || attempt == 5 {
			w.t.Fatalf("update the ports of %s: %v", name, err)
		}
	}
}

// tabby runs the tabby CLI (`tabby --lab NAME` for the lab's datastore).
func (w *world) tabby(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(testBinaries(w.t), "tabby"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("tabby %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

package datastoretest

import (
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// RunClient runs the contract of the typed resource Client over stores
// from h.New.
func RunClient(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c *datastore.Client, name string)
	}{
		{"CreateGet", testClientCreateGet},
		{"CreateTwice", testClientCreateTwice},
		{"UpdateStale", testClientUpdateStale},
		{"Apply", testClientApply},
		{"Delete", testClientDelete},
		{"ListNamespaces", testClientListNamespaces},
		{"Watch", testClientWatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := h.New(t)
			t.Cleanup(func() { _ = s.Close() })
			name := "contract"
			if h.Unique {
				name = "contract-" + strconv.Itoa(len(tc.name)) + "-" + sanitize(tc.name)
			}
			tc.fn(t, datastore.NewClient(s), name)
		})
	}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func pool(name, cidr string) *api.IPPool {
	return &api.IPPool{
		ObjectMeta: api.ObjectMeta{Name: name, Labels: map[string]string{"tier": "test"}},
		Spec:       api.IPPoolSpec{CIDR: cidr, BlockSize: 26, IPIPMode: "Never", VXLANMode: "Never", NATOutgoing: true},
	}
}

func netset(ns, name string, nets ...string) *api.NetworkSet {
	return &api.NetworkSet{ObjectMeta: api.ObjectMeta{Namespace: ns, Name: name}, Spec: api.NetworkSetSpec{Nets: nets}}
}

func rvOf(t *testing.T, r api.Resource) int64 {
	t.Helper()
	n, err := strconv.ParseInt(r.GetObjectMeta().ResourceVersion, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("resourceVersion %q: not a revision", r.GetObjectMeta().ResourceVersion)
	}
	return n
}

func testClientCreateGet(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	created, err := c.Create(ctx, pool(name, "10.1.0.0/16"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	m := created.GetObjectMeta()
	if m.UID == "" || m.CreationTimestamp == nil {
		t.Errorf("Create: got uid %q, creationTimestamp %v; want both set", m.UID, m.CreationTimestamp)
	}
	rvOf(t, created)
	got, err := c.Get(ctx, "IPPool", "", name)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("Get after Create (-created +got):\n%s", diff)
	}
	if tm := got.GetTypeMeta(); tm.Kind != "IPPool" || tm.APIVersion != api.APIVersion {
		t.Errorf("Get type meta: got %+v, want kind IPPool, apiVersion %s", tm, api.APIVersion)
	}
	_, err = c.Get(ctx, "IPPool", "", name+"-missing")
	wantErr(t, "Get missing", err, datastore.ErrNotFound)
	_, err = c.Get(ctx, "NoSuchKind", "", name)
	if err == nil {
		t.Errorf("Get of unknown kind: got no error")
	}
}

func testClientCreateTwice(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	if _, err := c.Create(ctx, pool(name, "10.2.0.0/16")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err := c.Create(ctx, pool(name, "10.3.0.0/16"))
	wantErr(t, "second Create", err, datastore.ErrExists)
	got, err := c.Get(ctx, "IPPool", "", name)
	if err != nil {
		t.Fatal(err)
	}
	if cidr := got.(*api.IPPool).Spec.CIDR; cidr != "10.2.0.0/16" {
		t.Errorf("after failed Create: cidr %s, want 10.2.0.0/16", cidr)
	}
}

func testClientUpdateStale(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	created, err := c.Create(ctx, pool(name, "10.4.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	staleRV := created.GetObjectMeta().ResourceVersion
	uid := created.GetObjectMeta().UID

	// Two writers read the same version; the second one must lose.
	first := pool(name, "10.4.0.0/16")
	first.Spec.Disabled = true
	first.ResourceVersion = staleRV
	updated, err := c.Update(ctx, first)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if rvOf(t, updated) <= rvOf(t, created) {
		t.Errorf("Update resourceVersion: got %s, want > %s", updated.GetObjectMeta().ResourceVersion, staleRV)
	}
	if got := updated.GetObjectMeta().UID; got != uid {
		t.Errorf("Update without uid: got uid %q, want the stored %q kept", got, uid)
	}
	second := pool(name, "10.4.0.0/16")
	second.Spec.NATOutgoing = false
	second.ResourceVersion = staleRV
	_, err = c.Update(ctx, second)
	wantErr(t, "Update at stale resourceVersion", err, datastore.ErrConflict)

	got, err := c.Get(ctx, "IPPool", "", name)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.(*api.IPPool); !p.Spec.Disabled || !p.Spec.NATOutgoing {
		t.Errorf("after lost race: got spec %+v, want the first writer's", p.Spec)
	}
	noRV := pool(name, "10.4.0.0/16")
	if _, err := c.Update(ctx, noRV); err == nil {
		t.Errorf("Update without resourceVersion: got no error")
	}
	missing := pool(name+"-missing", "10.5.0.0/16")
	missing.ResourceVersion = staleRV
	_, err = c.Update(ctx, missing)
	wantErr(t, "Update of missing resource", err, datastore.ErrNotFound)
}

func testClientApply(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	out, created, err := c.Apply(ctx, pool(name, "10.6.0.0/16"))
	if err != nil || !created {
		t.Fatalf("first Apply: created %v, err %v; want created", created, err)
	}
	uid := out.GetObjectMeta().UID
	rv1 := rvOf(t, out)
	p := pool(name, "10.6.0.0/16")
	p.Spec.Disabled = true
	out, created, err = c.Apply(ctx, p)
	if err != nil || created {
		t.Fatalf("second Apply: created %v, err %v; want replaced", created, err)
	}
	if rvOf(t, out) <= rv1 {
		t.Errorf("second Apply resourceVersion: got %d, want > %d", rvOf(t, out), rv1)
	}
	if out.GetObjectMeta().UID != uid {
		t.Errorf("Apply changed uid: got %q, want %q", out.GetObjectMeta().UID, uid)
	}
	got, err := c.Get(ctx, "IPPool", "", name)
	if err != nil {
		t.Fatal(err)
	}
	if !got.(*api.IPPool).Spec.Disabled {
		t.Errorf("after Apply: spec %+v, want disabled", got.(*api.IPPool).Spec)
	}
	// With a stale resourceVersion Apply is a conditional update.
	stale := pool(name, "10.6.0.0/16")
	stale.ResourceVersion = strconv.FormatInt(rv1, 10)
	_, _, err = c.Apply(ctx, stale)
	wantErr(t, "Apply at stale resourceVersion", err, datastore.ErrConflict)
}

func testClientDelete(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	created, err := c.Create(ctx, netset("team-a", name, "10.7.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	rv := created.GetObjectMeta().ResourceVersion
	next := netset("team-a", name, "10.7.1.0/24")
	next.ResourceVersion = rv
	updated, err := c.Update(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, "NetworkSet", "team-a", name, rv)
	wantErr(t, "Delete at stale resourceVersion", err, datastore.ErrConflict)
	_, err = c.Delete(ctx, "NetworkSet", "default", name, "")
	wantErr(t, "Delete in another namespace", err, datastore.ErrNotFound)
	deleted, err := c.Delete(ctx, "NetworkSet", "team-a", name, "")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if diff := cmp.Diff(updated.(*api.NetworkSet).Spec, deleted.(*api.NetworkSet).Spec); diff != "" {
		t.Errorf("Delete returned (-last +deleted):\n%s", diff)
	}
	_, err = c.Get(ctx, "NetworkSet", "team-a", name)
	wantErr(t, "Get after Delete", err, datastore.ErrNotFound)
	_, err = c.Delete(ctx, "NetworkSet", "team-a", name, "")
	wantErr(t, "second Delete", err, datastore.ErrNotFound)
}

func testClientListNamespaces(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	for _, ns := range []string{"team-a", "team-b", ""} {
		if _, err := c.Create(ctx, netset(ns, name, "10.8.0.0/24")); err != nil {
			t.Fatalf("Create in %q: %v", ns, err)
		}
	}
	list := func(ns string) []string {
		t.Helper()
		rs, rev, err := c.List(ctx, "NetworkSet", ns)
		if err != nil {
			t.Fatalf("List(%q): %v", ns, err)
		}
		if rev <= 0 {
			t.Errorf("List(%q) revision: got %d, want > 0", ns, rev)
		}
		var out []string
		for _, r := range rs {
			if m := r.GetObjectMeta(); m.Name == name {
				out = append(out, m.Namespace+"/"+m.Name)
			}
		}
		return out
	}
	if diff := cmp.Diff([]string{"default/" + name, "team-a/" + name, "team-b/" + name}, list("")); diff != "" {
		t.Errorf("List all namespaces (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"team-b/" + name}, list("team-b")); diff != "" {
		t.Errorf("List(team-b) (-want +got):\n%s", diff)
	}
}

func testClientWatch(t *testing.T, c *datastore.Client, name string) {
	ctx := ctxT(t)
	_, rev, err := c.List(ctx, "IPPool", "")
	if err != nil {
		t.Fatal(err)
	}
	w := c.Watch(ctx, "IPPool", rev+1)
	created, err := c.Create(ctx, pool(name, "10.9.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, netset("", name, "10.9.0.0/24")); err != nil {
		t.Fatal(err) // another kind: not in this watch
	}
	p := pool(name, "10.9.0.0/16")
	p.Spec.Disabled = true
	p.ResourceVersion = created.GetObjectMeta().ResourceVersion
	updated, err := c.Update(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := c.Delete(ctx, "IPPool", "", name, "")
	if err != nil {
		t.Fatal(err)
	}
	next := func() datastore.ResourceEvent {
		t.Helper()
		select {
		case e, ok := <-w:
			if !ok {
				t.Fatalf("resource watch closed")
			}
			if e.Err != nil {
				t.Fatalf("resource watch error: %v", e.Err)
			}
			return e
		case <-ctx.Done():
			t.Fatalf("no resource event")
		}
		panic("unreachable")
	}
	for i, want := range []struct {
		typ datastore.EventType
		res api.Resource
	}{
		{datastore.EventPut, created},
		{datastore.EventPut, updated},
		{datastore.EventDelete, deleted},
	} {
		e := next()
		if e.Type != want.typ {
			t.Fatalf("event %d: got type %v, want %v", i, e.Type, want.typ)
		}
		if want.typ == datastore.EventPut && e.Revision != rvOf(t, want.res) {
			t.Errorf("event %d: got revision %d, want %d", i, e.Revision, rvOf(t, want.res))
		}
		if diff := cmp.Diff(want.res, e.Resource); diff != "" {
			t.Errorf("event %d resource (-want +got):\n%s", i, diff)
		}
	}

	// A value that does not decode arrives as an event with Err, and the
	// watch goes on.
	k, _ := api.LookupKind("IPPool")
	if _, err := c.Store.Create(ctx, datastore.ResourceKey(k, "", name+"-bad"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-w:
		if e.Err == nil || e.Type == datastore.EventError {
			t.Fatalf("undecodable value: got event type %v, err %v; want a put event with an error", e.Type, e.Err)
		}
	case <-ctx.Done():
		t.Fatalf("no event for an undecodable value")
	}
	again, err := c.Create(ctx, pool(name, "10.9.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	if e := next(); e.Type != datastore.EventPut || e.Revision != rvOf(t, again) {
		t.Errorf("after undecodable value: got event type %v at %d, want put at %d", e.Type, e.Revision, rvOf(t, again))
	}
}

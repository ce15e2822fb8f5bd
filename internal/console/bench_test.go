package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/memstore"
)

// BenchmarkPoliciesPage renders the policies page of 2,000 endpoints and
// 200 policies (400,000 selector evaluations) from an in-memory datastore;
// BenchmarkEndpointsPage renders the endpoints page of the same store:
// the same reads and selection, 2,000 rows of labels to render.
func BenchmarkPoliciesPage(b *testing.B)  { benchPage(b, "/policies") }
func BenchmarkEndpointsPage(b *testing.B) { benchPage(b, "/endpoints") }

func benchPage(b *testing.B, path string) {
	store := memstore.New()
	c := datastore.NewClient(store)
	ctx := context.Background()
	for i := range 2000 {
		w := wep(fmt.Sprintf("w%d", i), "h1", fmt.Sprintf("10.%d.%d.%d/32", 100+i/65536, i/256%256, i%256), map[string]string{"app": fmt.Sprintf("a%d", i%100), "tier": "t"})
		if _, err := c.Create(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 200 {
		p := &api.NetworkPolicy{TypeMeta: tm("NetworkPolicy"), ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default"},
			Spec: api.NetworkPolicySpec{Selector: fmt.Sprintf("app == 'a%d' && has(tier)", i%100), Ingress: []api.Rule{{Action: "Allow"}}}}
		if _, err := c.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	srv, err := New(Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 {
			b.Fatalf("GET %s: %d", path, rec.Code)
		}
	}
}

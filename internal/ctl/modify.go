package ctl

import (
	"context"
	"errors"
	"fmt"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
)

// changeFunc computes the new version of a resource from the stored one
// (a copy it may change). pinned says the caller fixed the resourceVersion
// to write against, so a conflict is reported instead of retried.
type changeFunc func(cur api.Resource) (next api.Resource, pinned bool, err error)

// target names one stored resource.
type target struct {
	kind      api.KindInfo
	namespace string
	name      string
}

func (t target) String() string {
	if t.kind.Scope == api.Namespaced {
		return fmt.Sprintf("%s %q", t.kind.Kind, t.namespace+"/"+t.name)
	}
	return fmt.Sprintf("%s %q", t.kind.Kind, t.name)
}

func newTarget(kind, namespace, name string) (target, error) {
	k, ok := api.LookupKind(kind)
	if !ok {
		return target{}, fmt.Errorf("unknown resource kind %q (kinds: %s)", kind, kindNames())
	}
	if k.Scope == api.Namespaced && namespace == "" {
		namespace = api.DefaultNamespace
	}
	if k.Scope != api.Namespaced && namespace != "" {
		return target{}, fmt.Errorf("-n %s: %s is not namespaced", namespace, k.Kind)
	}
	return target{kind: k, namespace: namespace, name: name}, nil
}

// modify reads a resource, changes it and writes it back with
// compare-and-swap on the revision it read, through the same checks as
// replace: field validation, ValidateUpdate (immutable fields), and for
// IPPools the overlap and IPAM checks. With dryRun it stops before the
// write and returns what it would have written.
//
// Invariant: every write is computed from the version it replaces. When
// another writer wins the compare-and-swap, modify reads again and
// recomputes the change (at most datastore.MaxRetries times), so it never
// overwrites someone else's update; a pinned resourceVersion is a conflict.
func modify(ctx context.Context, store datastore.Store, t target, dryRun bool, change changeFunc) (api.Resource, error) {
	c := datastore.NewClient(store)
	for range datastore.MaxRetries {
		cur, err := c.Get(ctx, t.kind.Kind, t.namespace, t.name)
		if err != nil {
			return nil, err
		}
		next, pinned, err := change(api.DeepCopy(cur))
		if err != nil {
			return nil, err
		}
		if err := checkChange(ctx, store, c, cur, next); err != nil {
			return nil, err
		}
		if dryRun {
			return next, nil
		}
		if !pinned {
			next.GetObjectMeta().ResourceVersion = cur.GetObjectMeta().ResourceVersion
		}
		out, err := c.Update(ctx, next)
		if errors.Is(err, datastore.ErrConflict) && !pinned {
			continue
		}
		return out, err
	}
	return nil, fmt.Errorf("%s: %w (gave up after %d attempts)", t, datastore.ErrConflict, datastore.MaxRetries)
}

// checkChange is what replace checks for one resource, before any write.
func checkChange(ctx context.Context, store datastore.Store, c *datastore.Client, cur, next api.Resource) error {
	if err := api.ValidateUpdate(cur, next); err != nil {
		return err
	}
	api.SetDefaults(next)
	if err := api.Validate(next); err != nil {
		return err
	}
	docs := []document{{source: "args", res: next}}
	if err := checkPools(ctx, c, "replace", docs); err != nil {
		return err
	}
	return checkPoolsWithIPAM(ctx, store, c, docs)
}

package datastore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tabbynet/tabby/internal/api"
)

func lookup(kind string) (api.KindInfo, error) {
	k, ok := api.LookupKind(kind)
	if !ok {
		return api.KindInfo{}, fmt.Errorf("unknown resource kind %q", kind)
	}
	return k, nil
}

// decode turns a stored value into a resource carrying its revision.
func decode(k api.KindInfo, kv *KV) (api.Resource, error) {
	r := k.NewFunc()
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	tm := r.GetTypeMeta()
	tm.APIVersion, tm.Kind = api.APIVersion, k.Kind
	r.GetObjectMeta().ResourceVersion = strconv.FormatInt(kv.Revision, 10)
	return r, nil
}

// encode serializes r without its ResourceVersion (the revision is the key's own).
func encode(r api.Resource) ([]byte, error) {
	m := r.GetObjectMeta()
	rv := m.ResourceVersion
	m.ResourceVersion = ""
	tm := r.GetTypeMeta()
	tm.APIVersion, tm.Kind = api.APIVersion, r.KindInfo().Kind
	b, err := json.Marshal(r)
	m.ResourceVersion = rv
	return b, err
}

func keyOf(r api.Resource) string {
	m := r.GetObjectMeta()
	k := r.KindInfo()
	if k.Scope == api.Namespaced && m.Namespace == "" {
		m.Namespace = api.DefaultNamespace
	}
	return ResourceKey(k, m.Namespace, m.Name)
}

func parseRV(rv string) (int64, error) {
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("metadata.resourceVersion: %q is not a revision", rv)
	}
	return n, nil
}

func prepare(r api.Resource) error {
	api.SetDefaults(r)
	return api.Validate(r)
}

// Get reads one resource; ErrNotFound when absent.
func (c *Client) Get(ctx context.Context, kind, namespace, name string) (api.Resource, error) {
	k, err := lookup(kind)
	if err != nil {
		return nil, err
	}
	kv, err := c.Store.Get(ctx, ResourceKey(k, namespace, name))
	if err != nil {
		return nil, fmt.Errorf("get %s %q: %w", k.Kind, name, err)
	}
	return decode(k, kv)
}

// BadRecordsError is List's error when some stored values cannot be
// decoded: it names every one of them. List still returns the others.
type BadRecordsError struct {
	Records []BadRecord
}

func (e *BadRecordsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d stored record(s) cannot be decoded (fix or delete them):", len(e.Records))
	for _, r := range e.Records {
		fmt.Fprintf(&b, "\n  %s (revision %d): %v", r.Key, r.Revision, r.Err)
	}
	return b.String()
}

// List returns every resource of a kind; namespace "" means all namespaces.
// It also returns the revision of the listing, to watch from. A value that
// cannot be decoded does not hide the others: they are returned together
// with a *BadRecordsError naming every bad key. A caller that must see the
// whole kind (GC deciding what is live) treats that as an error; one that
// only shows or serves what is readable uses the resources and reports it.
func (c *Client) List(ctx context.Context, kind, namespace string) ([]api.Resource, int64, error) {
	k, err := lookup(kind)
	if err != nil {
		return nil, 0, err
	}
	prefix := KeyPrefix + k.Plural + "/"
	if k.Scope == api.Namespaced && namespace != "" {
		prefix += namespace + "/"
	}
	kvs, rev, err := c.Store.List(ctx, prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k.Plural, err)
	}
	out := make([]api.Resource, 0, len(kvs))
	var bad []BadRecord
	for _, kv := range kvs {
		r, err := decode(k, kv)
		if err != nil {
			bad = append(bad, BadRecord{Kind: k.Kind, Key: kv.Key, Revision: kv.Revision, Err: err})
			continue
		}
		out = append(out, r)
	}
	if len(bad) > 0 {
		return out, rev, &BadRecordsError{Records: bad}
	}
	return out, rev, nil
}

// Create stores a new resource; ErrExists if it is already there.
func (c *Client) Create(ctx context.Context, r api.Resource) (api.Resource, error) {
	if err := prepare(r); err != nil {
		return nil, err
	}
	m := r.GetObjectMeta()
	if m.UID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		m.UID = hex.EncodeToString(b[:])
	}
	if m.CreationTimestamp == nil {
		now := time.Now().UTC().Truncate(time.Second)
		m.CreationTimestamp = &now
	}
	val, err := encode(r)
	if err != nil {
		return nil, err
	}
	rev, err := c.Store.Create(ctx, keyOf(r), val)
	if err != nil {
		return nil, fmt.Errorf("create %s %q: %w", r.KindInfo().Kind, m.Name, err)
	}
	m.ResourceVersion = strconv.FormatInt(rev, 10)
	return r, nil
}

// Update replaces a resource read at r's ResourceVersion; a stale version
// is ErrConflict, never a lost update.
func (c *Client) Update(ctx context.Context, r api.Resource) (api.Resource, error) {
	m := r.GetObjectMeta()
	rev, err := parseRV(m.ResourceVersion)
	if err != nil {
		return nil, fmt.Errorf("update %s %q: %w", r.KindInfo().Kind, m.Name, err)
	}
	if err := prepare(r); err != nil {
		return nil, err
	}
	key := keyOf(r)
	if m.UID == "" || m.CreationTimestamp == nil {
		// Keep identity fields the caller did not carry over.
		if cur, err := c.Store.Get(ctx, key); err == nil {
			if old, err := decode(r.KindInfo(), cur); err == nil {
				om := old.GetObjectMeta()
				if m.UID == "" {
					m.UID = om.UID
				}
				if m.CreationTimestamp == nil {
					m.CreationTimestamp = om.CreationTimestamp
				}
			}
		}
	}
	val, err := encode(r)
	if err != nil {
		return nil, err
	}
	newRev, err := c.Store.Update(ctx, key, val, rev)
	if err != nil {
		return nil, fmt.Errorf("update %s %q: %w", r.KindInfo().Kind, m.Name, err)
	}
	m.ResourceVersion = strconv.FormatInt(newRev, 10)
	return r, nil
}

// Apply creates r, or replaces the stored resource with it. Without a
// ResourceVersion it replaces whatever is stored (re-reading on conflict, a
// bounded number of times); with one, a stale version is a conflict.
// It reports whether the resource was created.
func (c *Client) Apply(ctx context.Context, r api.Resource) (api.Resource, bool, error) {
	if err := prepare(r); err != nil {
		return nil, false, err
	}
	m := r.GetObjectMeta()
	if m.ResourceVersion != "" {
		out, err := c.Update(ctx, r)
		return out, false, err
	}
	key := keyOf(r)
	for range MaxRetries {
		cur, err := c.Store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			out, err := c.Create(ctx, r)
			if errors.Is(err, ErrExists) {
				continue
			}
			return out, err == nil, err
		}
		if err != nil {
			return nil, false, fmt.Errorf("apply %s %q: %w", r.KindInfo().Kind, m.Name, err)
		}
		m.ResourceVersion = strconv.FormatInt(cur.Revision, 10)
		m.UID, m.CreationTimestamp = "", nil
		out, err := c.Update(ctx, r)
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
			m.ResourceVersion = ""
			continue
		}
		return out, false, err
	}
	return nil, false, fmt.Errorf("apply %s %q: %w (gave up after %d attempts)", r.KindInfo().Kind, m.Name, ErrConflict, MaxRetries)
}

// Delete removes a resource. With a resourceVersion the delete is
// conditional on it; without one the current version is read and deleted
// with compare-and-swap (retrying a bounded number of times). It returns
// the deleted resource.
func (c *Client) Delete(ctx context.Context, kind, namespace, name, resourceVersion string) (api.Resource, error) {
	k, err := lookup(kind)
	if err != nil {
		return nil, err
	}
	key := ResourceKey(k, namespace, name)
	for range MaxRetries {
		kv, err := c.Store.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("delete %s %q: %w", k.Kind, name, err)
		}
		rev := kv.Revision
		if resourceVersion != "" {
			if rev, err = parseRV(resourceVersion); err != nil {
				return nil, err
			}
		}
		err = c.Store.Delete(ctx, key, rev)
		if errors.Is(err, ErrConflict) && resourceVersion == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("delete %s %q: %w", k.Kind, name, err)
		}
		return decode(k, kv)
	}
	return nil, fmt.Errorf("delete %s %q: %w (gave up after %d attempts)", k.Kind, name, ErrConflict, MaxRetries)
}

// DeleteIf deletes a resource only while owns says so: it reads
// the stored value, asks owns whether it may go, and deletes it
// conditional on the revision it read, re-reading on a conflict (bounded
// by MaxRetries). It reports whether it deleted; a resource that is
// already gone, or that owns refuses, is not an error. The check and the
// delete are one compare-and-swap: a value written after the read is
// never deleted on the strength of the old one.
func (c *Client) DeleteIf(ctx context.Context, kind, namespace, name string, owns func(api.Resource) bool) (bool, error) {
	k, err := lookup(kind)
	if err != nil {
		return false, err
	}
	key := ResourceKey(k, namespace, name)
	for range MaxRetries {
		kv, err := c.Store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("delete %s %q: %w", k.Kind, name, err)
		}
		r, err := decode(k, kv)
		if err != nil {
			return false, fmt.Errorf("delete %s %q: %w", k.Kind, name, err)
		}
		if !owns(r) {
			return false, nil
		}
		err = c.Store.Delete(ctx, key, kv.Revision)
		switch {
		case errors.Is(err, ErrConflict):
			continue
		case errors.Is(err, ErrNotFound):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("delete %s %q: %w", k.Kind, name, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("delete %s %q: %w (gave up after %d attempts)", k.Kind, name, ErrConflict, MaxRetries)
}

// Watch streams changes to resources of a kind (all namespaces) from
// revision fromRev. Errors arrive as events with Err set.
func (c *Client) Watch(ctx context.Context, kind string, fromRev int64) <-chan ResourceEvent {
	out := make(chan ResourceEvent, 64)
	k, err := lookup(kind)
	if err != nil {
		out <- ResourceEvent{Type: EventError, Err: err}
		close(out)
		return out
	}
	in := c.Store.Watch(ctx, KeyPrefix+k.Plural+"/", fromRev)
	go func() {
		defer close(out)
		for ev := range in {
			re := ResourceEvent{Type: ev.Type, Revision: ev.KV.Revision, Err: ev.Err}
			switch ev.Type {
			case EventPut:
				if re.Resource, re.Err = decode(k, &ev.KV); re.Err != nil {
					re.Resource = metaOnly(k, ev.KV.Key) // say which one is bad
				}
			case EventDelete:
				if ev.Prev != nil {
					re.Resource, _ = decode(k, ev.Prev)
				}
				if re.Resource == nil {
					re.Resource = metaOnly(k, ev.KV.Key)
				}
			}
			select {
			case out <- re:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// metaOnly rebuilds a resource with only its name and namespace from its key.
func metaOnly(k api.KindInfo, key string) api.Resource {
	r := k.NewFunc()
	rest := strings.TrimPrefix(key, KeyPrefix+k.Plural+"/")
	m := r.GetObjectMeta()
	if ns, name, ok := strings.Cut(rest, "/"); ok && k.Scope == api.Namespaced {
		m.Namespace, m.Name = ns, name
	} else {
		m.Name = rest
	}
	return r
}

package flows

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// FilterFromQuery reads a Filter from GET /flows's query parameters:
// since (RFC 3339 or a duration such as 5m), namespace, endpoint, policy,
// action (allow|deny).
func FilterFromQuery(q url.Values, now time.Time) (Filter, error) {
	since, err := ParseSince(q.Get("since"), now)
	if err != nil {
		return Filter{}, err
	}
	f := Filter{Since: since, Namespace: q.Get("namespace"), Endpoint: q.Get("endpoint"), Policy: q.Get("policy"), Action: q.Get("action")}
	return f, f.Validate()
}

// Query is the inverse of FilterFromQuery.
func (f Filter) Query() url.Values {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	for k, v := range map[string]string{"namespace": f.Namespace, "endpoint": f.Endpoint, "policy": f.Policy, "action": f.Action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// Handler serves GET /flows from ring: newline-delimited JSON, one
// FlowRecord per line, oldest first; with follow=1 it keeps streaming new
// records, flushing after each, until the client goes away.
func Handler(ring *Ring) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := FilterFromQuery(r.URL.Query(), time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		follow := false
		switch v := r.URL.Query().Get("follow"); v {
		case "", "0", "false":
		case "1", "true":
			follow = true
		default:
			http.Error(w, fmt.Sprintf("follow: %q is not 1 or 0", v), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		if !follow {
			for _, rec := range ring.Snapshot(f) {
				if enc.Encode(rec) != nil {
					return
				}
			}
			return
		}
		now, next, stop := ring.Follow(f, 1024)
		defer stop()
		for _, rec := range now {
			if enc.Encode(rec) != nil {
				return
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case rec := <-next:
				if !f.Match(&rec) {
					continue
				}
				if enc.Encode(rec) != nil {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
	})
}

// Fetch reads the flows of one agent (base is its HTTP address, e.g.
// http://10.0.0.1:9099) and calls fn for each record until the stream
// ends, fn fails or ctx is done. With follow it streams until ctx ends.
func Fetch(ctx context.Context, client *http.Client, base string, f Filter, follow bool, fn func(FlowRecord) error) error {
	q := f.Query()
	if follow {
		q.Set("follow", "1")
	}
	u := base + Path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("flows from %s: %w", base, err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("flows from %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("flows from %s: %s: %s", base, resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var rec FlowRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("flows from %s: bad record %q: %w", base, sc.Bytes(), err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("flows from %s: %w", base, err)
	}
	return nil
}

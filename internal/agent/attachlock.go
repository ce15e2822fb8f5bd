package agent

import (
	"context"
	"sync"
)

// attachLocks serialises the CNI operations of one attachment (its IPAM
// handle: network, container ID, interface). A runtime whose plugin call
// timed out sends DEL while the agent may still be running the ADD; the
// DEL must wait for it and then undo what it made, or the ADD finishing
// last would leave an endpoint and addresses behind that nothing removes
// (Mesos sends no CNI GC). Operations on different attachments never wait
// for each other. An entry lives only while someone holds or waits for it.
type attachLocks struct {
	mu sync.Mutex
	m  map[string]*attachLock
}

type attachLock struct {
	sem  chan struct{} // holds one token while the attachment is locked
	refs int           // holders and waiters
}

// lock waits until key is free or ctx ends; on success the caller must
// call the returned unlock.
func (l *attachLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*attachLock{}
	}
	e := l.m[key]
	if e == nil {
		e = &attachLock{sem: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; l.release(key, e) }, nil
	case <-ctx.Done():
		l.release(key, e)
		return nil, ctx.Err()
	}
}

func (l *attachLocks) release(key string, e *attachLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, key)
	}
}

// size is the number of attachments locked or waited for.
func (l *attachLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

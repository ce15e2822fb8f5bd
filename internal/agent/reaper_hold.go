package agent

import (
	"sync"
	"time"
)

// holdSet fences the reaper off CNI ADDs of the same IPAM handle. A re-ADD
// of a container ID that died (containerd lets an ID be reused once the
// old container is deleted) gets the same handle, and IPAM returns what
// the handle still holds: were the reaper to release the handle between
// that ADD's allocation and its endpoint write, the new container would
// run with addresses IPAM calls free. So ADDs of a handle wait while the
// reaper removes one, and the reaper gives up on a handle whose ADD is
// running or ran after the endpoint was seen dead (its endpoint may not
// be in the cache yet).
type holdSet struct {
	mu      sync.Mutex
	adds    map[string]int           // handle → ADDs running
	reaping map[string]chan struct{} // handle → closed when the reaper is done
	lastAdd map[string]time.Time     // handle → when its last ADD ended
	now     func() time.Time
}

func newHoldSet(now func() time.Time) *holdSet {
	return &holdSet{adds: map[string]int{}, reaping: map[string]chan struct{}{}, lastAdd: map[string]time.Time{}, now: now}
}

// holdAdd waits while the reaper holds handle, then counts an ADD of it
// until the returned function is called.
func (s *holdSet) holdAdd(handle string) func() {
	s.mu.Lock()
	for {
		ch, ok := s.reaping[handle]
		if !ok {
			break
		}
		s.mu.Unlock()
		<-ch // bounded: the reaper's work has a timeout (reapTimeout)
		s.mu.Lock()
	}
	s.adds[handle]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.adds[handle]--; s.adds[handle] <= 0 {
			delete(s.adds, handle)
		}
		s.lastAdd[handle] = s.now()
	}
}

// tryReap takes handle for the reaper unless an ADD of it is running or
// ended after since; ok false means: judge again later.
func (s *holdSet) tryReap(handle string, since time.Time) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetOld(s.now())
	if s.adds[handle] > 0 {
		return nil, false
	}
	if t, ok := s.lastAdd[handle]; ok && !t.Before(since) {
		return nil, false
	}
	ch := make(chan struct{})
	s.reaping[handle] = ch
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.reaping, handle)
		close(ch)
	}, true
}

// lastAddKeep is how long an ended ADD is remembered: longer than any
// suspect waits before it is judged.
const lastAddKeep = 2 * time.Hour

func (s *holdSet) forgetOld(now time.Time) {
	for h, t := range s.lastAdd {
		if now.Sub(t) > lastAddKeep {
			delete(s.lastAdd, h)
		}
	}
}

// has reports whether an ADD of the endpoint key is in progress.
func (p *pendingEndpoints) has(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[key]
	return ok
}

// holdsHandle reports whether an ADD in progress uses handle.
func (p *pendingEndpoints) holdsHandle(handle string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.m {
		if w.Spec.IPAMHandle == handle {
			return true
		}
	}
	return false
}

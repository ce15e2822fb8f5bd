package memstore

import (
	"context"
	"sync/atomic"
)

// Elector is an election among the Electors of one Store in this process
// (the in-memory counterpart of etcd.Elector, for tests): at most one per
// name leads at a time; a leader whose Run ends hands over at once.
type Elector struct {
	token  chan struct{}
	leader atomic.Bool
}

// NewElector returns a candidate for name on s; it starts nothing.
func NewElector(s *Store, name string) *Elector {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.elections == nil {
		s.elections = map[string]chan struct{}{}
	}
	tok := s.elections[name]
	if tok == nil {
		tok = make(chan struct{}, 1) // holds the leader's token
		s.elections[name] = tok
	}
	return &Elector{token: tok}
}

// Leader reports whether this candidate leads now.
func (e *Elector) Leader() bool { return e.leader.Load() }

// Run campaigns, then leads until ctx ends. It returns nil.
func (e *Elector) Run(ctx context.Context) error {
	select {
	case e.token <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	e.leader.Store(true)
	<-ctx.Done()
	e.leader.Store(false)
	<-e.token
	return nil
}

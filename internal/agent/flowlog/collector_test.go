package flowlog

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/flows"
)

// TestCollectorRun: Run closes a window every Window (records reach the
// ring) and returns when its context ends, leaving no goroutine behind;
// bad configuration is refused naming the field.
func TestCollectorRun(t *testing.T) {
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a node: no error")
	}
	if _, err := New(Config{Node: "n", Window: time.Millisecond}, nil); err == nil {
		t.Error("New with a 1ms window: no error naming flow-window")
	}
	before := runtime.NumGoroutine()
	c, err := New(Config{Node: "n", Window: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	c.add(true, flows.FlowRecord{Node: "n", Proto: "tcp", SrcIP: "10.0.0.1", DstIP: "10.0.0.2", DstPort: 80, Direction: flows.Ingress, Action: flows.Allow})
	deadline := time.Now().Add(5 * time.Second)
	for c.Ring().Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no window closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Run, %d before", n, before)
	}
}

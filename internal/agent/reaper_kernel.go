package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
)

// kernelDeadKernel is the reaper's real kernel: rtnetlink link events in
// the agent's own network namespace, and internal/netns for namespace paths.
type kernelDeadKernel struct{}

var _ deadKernel = kernelDeadKernel{}

func (kernelDeadKernel) NetNSGone(path string) (bool, error) { return netns.Gone(path) }

// linkEventBuffer is the subscription socket's receive buffer: large enough
// that a burst of container deaths is not lost (a loss only delays the
// reaper to its next sweep).
const linkEventBuffer = 1 << 20

func (kernelDeadKernel) WatchLinkDeletes(ctx context.Context, gone func(name string)) error {
	ch := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	var mu sync.Mutex
	var subErr error
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ReceiveBufferSize: linkEventBuffer,
		ErrorCallback: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			subErr = errors.Join(subErr, err)
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	defer func() {
		close(done) // closes the socket: the receiving goroutine ends and closes ch
		for range ch {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				mu.Lock()
				defer mu.Unlock()
				return fmt.Errorf("link event subscription ended: %w", subErr)
			}
			if u.Header.Type == unix.RTM_DELLINK && u.Link != nil {
				gone(u.Link.Attrs().Name)
			}
		}
	}
}

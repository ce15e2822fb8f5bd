package lab

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// DialIn connects to addr (an IP:port) from inside network namespace ns;
// the connection stays in that namespace.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(netns.Path(ns), func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenIn listens on addr inside network namespace ns.
func ListenIn(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := netns.Do(netns.Path(ns), func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// HTTPClientIn is an HTTP client whose connections are made inside ns
// (say, to read the lab's Mesos master state from the master).
func HTTPClientIn(ns string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return DialIn(ctx, ns, network, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

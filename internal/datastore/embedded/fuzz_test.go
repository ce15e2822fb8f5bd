package embedded_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore/embedded"
)

// FuzzValidate feeds Validate arbitrary URLs and cluster strings: it must
// never panic, and what it accepts must be usable by etcd.
func FuzzValidate(f *testing.F) {
	f.Add("tabby", "http://127.0.0.1:2379", "", "")
	f.Add("a", "unix:///run/tabby/etcd.sock", "http://10.0.0.1:2380", "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380")
	f.Add("a", "https://[::1]:0", "http://0.0.0.0:2380", "a=http://10.0.0.1:2380")
	f.Add("y", "http://127.0.0.1:2379, unix:///s", "", "")
	f.Add("x", "http://127.0.0.1:99999", "http://127.0.0.1:1/", "x=")
	f.Add("", "unix://rel", "http://a:1", "=http://1.2.3.4:5,")
	f.Fuzz(func(t *testing.T, name, listen, peer, cluster string) {
		c := embedded.Config{Name: name, DataDir: "/d", ListenClient: listen, ListenPeer: peer, InitialCluster: cluster,
			CertFile: "c", KeyFile: "k"}.Defaults()
		if err := c.Validate(); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate error spans lines: %q", err)
			}
			return
		}
		for _, s := range append(strings.Split(c.ListenClient+","+c.AdvertiseClient, ","), c.ListenPeer, c.AdvertisePeer) {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if _, err := url.Parse(s); err != nil {
				t.Errorf("accepted URL %q does not parse: %v", s, err)
			}
		}
		if !strings.Contains(","+c.InitialCluster, ","+c.Name+"=") {
			t.Errorf("accepted initial cluster %q without member %q", c.InitialCluster, c.Name)
		}
	})
}

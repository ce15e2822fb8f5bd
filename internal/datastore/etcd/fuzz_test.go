package etcd_test

import (
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// FuzzConfigValidate: Validate never panics and its errors are one line
// naming the bad endpoint.
func FuzzConfigValidate(f *testing.F) {
	f.Add("http://10.0.0.1:2379")
	f.Add("unix:///run/tabby/etcd.sock")
	f.Add("https://[fe80::1%eth0]:2379")
	f.Add("10.0.0.1:2379")
	f.Add("unix://relative")
	f.Add("http://host:port/path?q")
	f.Fuzz(func(t *testing.T, ep string) {
		err := etcd.Config{Endpoints: []string{ep}}.Validate()
		if err == nil {
			return
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		if !strings.Contains(err.Error(), "etcd endpoint") {
			t.Errorf("error does not name the field: %q", err)
		}
	})
}

package ctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestNodeInstall(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "tabby-cni")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		file  string
		check func(t *testing.T, path string)
	}{
		{"conflist", []string{"--network", "tabby"}, "10-tabby.conflist", func(t *testing.T, path string) {
			list, err := libcni.ConfListFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if list.Name != "tabby" || list.CNIVersion != "1.1.0" || list.Plugins[0].Network.Type != "tabby" {
				t.Fatalf("conflist %+v", list)
			}
		}},
		{"mesos", []string{"--network", "calico", "--mesos", "--nameserver", "10.0.0.1"}, "calico.cni", func(t *testing.T, path string) {
			var m map[string]any
			b, _ := os.ReadFile(path)
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if _, has := m["cniVersion"]; has || m["name"] != "calico" || m["type"] != "tabby" || m["args"] != nil {
				t.Fatalf("Mesos config %s: want no cniVersion, no args, name calico", b)
			}
			if !strings.Contains(string(b), "10.0.0.1") {
				t.Fatalf("nameserver missing: %s", b)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, conf := filepath.Join(t.TempDir(), "bin"), filepath.Join(t.TempDir(), "conf")
			var out, errb bytes.Buffer
			args := append([]string{"node", "install", "--plugin", plugin, "--cni-bin-dir", bin, "--cni-conf-dir", conf}, tc.args...)
			if code := Main(args, strings.NewReader(""), &out, &errb); code != 0 {
				t.Fatalf("install: %d %s", code, errb.String())
			}
			for _, name := range []string{"tabby", "tabby-ipam"} {
				if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode().Perm() != 0o755 {
					t.Fatalf("%s not installed: %v", name, err)
				}
			}
			tc.check(t, filepath.Join(conf, tc.file))
			// Installing again is harmless.
			if code := Main(args, strings.NewReader(""), &out, &errb); code != 0 {
				t.Fatalf("second install: %d %s", code, errb.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"node", "install", "--network", "bad name", "--plugin", plugin, "--cni-bin-dir", dir, "--cni-conf-dir", dir}, strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad name") {
		t.Fatalf("bad network name: %d %q", code, errb.String())
	}
}

package runtimes_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tabbynet/tabby/internal/testenv"
)

// busyboxApplets are the commands the tests run inside containers.
var busyboxApplets = []string{"sh", "sleep", "ip", "nc", "ping", "cat", "echo", "mkdir", "wget", "httpd", "hostname"}

// httpGet is a shell command that fetches / from host:port with busybox
// nc (busybox wget crashes in the static build when it looks up users).
func httpGet(host, port string) string {
	return `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 ` + host + " " + port
}

// rootfsTar writes a root filesystem tarball holding Debian's static
// busybox and its applets as symlinks: the tests' image, built locally
// because there is no registry.
func rootfsTar(t *testing.T, dir string) string {
	t.Helper()
	testenv.NeedTools(t, "busybox")
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		t.Fatalf("read busybox: %v", err)
	}
	path := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	write := func(h *tar.Header, data []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	write(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	write(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	write(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, a := range busyboxApplets {
		write(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// dockerArchive writes a docker-archive image (what `docker save` makes)
// named ref with the rootfs tarball as its one layer, for
// `ctr images import`.
func dockerArchive(t *testing.T, dir, ref string) string {
	t.Helper()
	layer, err := os.ReadFile(rootfsTar(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	layerSum := sha256.Sum256(layer)
	config, _ := json.Marshal(map[string]any{"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{fmt.Sprintf("sha256:%x", layerSum)}}})
	configName := fmt.Sprintf("%x.json", sha256.Sum256(config))
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	path := filepath.Join(dir, "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer}, {configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

package runtimes_test

import (
	"archive/tar"
	"os"
	"path/filepath"
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

package runtimes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/internal/testenv"
)

// podmanImage is the name the tests import their busybox rootfs as.
const podmanImage = "localhost/tabby-busybox:test"

// Podman is a podman whose every file is under Dir: containers.conf
// (CNI backend, runc, cgroupfs), storage.conf (vfs), registries.conf,
// the CNI config and plugin directories, and the run directories. It
// runs in the network namespace at NSPath (a test host's) (nsenter --net: podman's own netns bind mounts stay
// visible to later podman commands and to the agent).
type Podman struct {
	t      *testing.T
	Dir    string
	NSPath string
	env    []string
	ran    ranLog
}

// podmanConf is the private containers.conf. default_ulimits keeps
// podman from raising limits above the test process's own (it would fail
// with EPERM); runc because crun refuses a hybrid cgroup hierarchy.
const podmanConf = `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["%[2]s"]
network_config_dir = "%[1]s/cni"
default_network = "tabby"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%[1]s/events.log"
tmp_dir = "%[1]s/tmp"
`

// NewPodman writes podman's private configuration for a Tabby network
// named network served by the agent at socket in the namespace at nsPath,
// with the plugin binary plugin, and imports the busybox image.
func NewPodman(t *testing.T, nsPath, socket, plugin, network string) *Podman {
	t.Helper()
	testenv.NeedTools(t, "podman", "nsenter", "runc")
	dir, err := os.MkdirTemp("", "tabby-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{t: t, Dir: dir, NSPath: nsPath}
	for _, d := range []string{"cni", "cni-bin", "tmp", "xdg", "graph", "runroot"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"tabby", "tabby-ipam"} {
		if err := os.Symlink(plugin, filepath.Join(dir, "cni-bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"containers.conf":              fmt.Sprintf(podmanConf, dir, filepath.Join(dir, "cni-bin")),
		"storage.conf":                 fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = \"%[1]s/graph\"\nrunroot = \"%[1]s/runroot\"\n", dir),
		"registries.conf":              "",
		"cni/" + network + ".conflist": string(conflist(network, socket)),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"))
	t.Cleanup(func() {
		// Containers first (their CNI DEL needs the agent, which the
		// cluster's cleanup stops later), then podman's files.
		_, _ = p.Try("rm", "--all", "--force", "--time", "0")
		_ = exec.Command("umount", "-R", filepath.Join(dir, "graph")).Run()
		_ = os.RemoveAll(dir)
	})
	p.Run("import", rootfsTar(t, dir), podmanImage)
	return p
}

// conflist is a CNI network list of one tabby plugin that takes port
// mappings.
func conflist(network, socket string) []byte {
	b, _ := json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": network, "plugins": []any{
		map[string]any{"type": "tabby", "agent_socket": socket, "ipam": map[string]any{"type": "tabby-ipam"},
			"capabilities": map[string]bool{"portMappings": true}},
	}}, "", "  ")
	return b
}

// Try runs podman with args in the host's namespace and returns its
// trimmed stdout.
func (p *Podman) Try(args ...string) (string, error) {
	p.ran.add(args)
	cmd := exec.Command("nsenter", append([]string{"--net=" + p.NSPath, "podman"}, args...)...)
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// Run is Try that fails the test on error.
func (p *Podman) Run(args ...string) string {
	p.t.Helper()
	out, err := p.Try(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// IP is the address of container name on network.
func (p *Podman) IP(name, network string) string {
	p.t.Helper()
	return p.Run("inspect", "--format", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
}

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// Lab is a lab that exists (up, or partly built). Get one from Up or Open.
type Lab struct {
	root  string
	l     layout
	st    *State
	proc  starter
	log   *slog.Logger
	ready time.Duration
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.st.Name }

// State is the lab's recorded state (a copy).
func (l *Lab) State() *State { s := *l.st; return &s }

// Dir is the lab's state directory.
func (l *Lab) Dir() string { return l.l.dir }

// ClientURL is the datastore as the root namespace reaches it: the unix
// socket in the state directory (no route into the lab needed); unixs://
// in a TLS lab (ClientTLS has the certificate to present).
func (l *Lab) ClientURL() string {
	if l.st.TLS {
		return "unixs://" + l.l.etcdSock()
	}
	return "unix://" + l.l.etcdSock()
}

// DatastoreURL is the datastore on the fabric (for lab nodes).
func (l *Lab) DatastoreURL() string { return l.st.DatastoreURL() }

// Binary paths inside BinDir.
const (
	TabbyBinary    = "tabby"
	TabbyCNIBinary = "tabby-cni"
)

func checkBinaries(dir string) error {
	for _, b := range []string{TabbyBinary, TabbyCNIBinary} {
		p := filepath.Join(dir, b)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("binDir %s: %s not found (run make build): %w", dir, b, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("binDir %s: %s is not an executable file", dir, b)
		}
	}
	return nil
}

func findIP() (string, error) {
	p, err := exec.LookPath("ip")
	if err != nil {
		return "", fmt.Errorf("the lab runs processes with `ip netns exec`: install iproute2: %w", err)
	}
	return p, nil
}

// Up builds and starts lab cfg.Name. On failure it removes everything it
// made and returns the error.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("lab up %s: needs root (it creates network namespaces)", cfg.Name)
	}
	if err := checkBinaries(cfg.BinDir); err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	ipCmd, err := findIP()
	if err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(cfg.StateRoot, 0o755); err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	dir, st, lk, err := claim(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	lab := &Lab{
		root:  cfg.StateRoot,
		l:     layout{dir},
		st:    st,
		proc:  starter{ip: ipCmd},
		log:   cfg.Logger.With("component", "lab", "lab", cfg.Name),
		ready: cfg.ReadyTimeout,
	}
	defer func() {
		if err != nil {
			lab.log.Warn("lab up failed; tearing down", "error", err)
			if terr := teardown(context.WithoutCancel(ctx), cfg.StateRoot, cfg.Name, lab.log); terr != nil {
				err = errors.Join(err, fmt.Errorf("and tearing down: %w", terr))
			}
		}
		lk.unlock()
	}()
	if err := lab.up(ctx, cfg); err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	lab.st.Phase = PhaseReady
	if err := writeJSON(lab.l.labJSON(), lab.st); err != nil {
		return nil, fmt.Errorf("lab up %s: %w", cfg.Name, err)
	}
	return lab, nil
}

func (l *Lab) up(ctx context.Context, cfg Config) error {
	t0 := time.Now()
	// The lab's processes run in their own mount namespaces (`ip netns
	// exec`); a shared state directory lets the netns handles the lab
	// bind-mounts later (Mesos-style, <root>/<containerID>/ns) reach the
	// agents, as they would on a real host.
	if err := makeShared(l.l.dir); err != nil {
		return err
	}
	for _, n := range append([]Node{l.st.Master}, l.st.Hosts...) {
		if err := os.MkdirAll(l.l.node(n.Name), 0o755); err != nil {
			return err
		}
	}
	if err := buildFabric(&l.st.Plan); err != nil {
		return fmt.Errorf("build fabric: %w", err)
	}
	// Nodes resolve through the master's DNS (when it runs); never through
	// the machine's resolvers, which the lab cannot reach.
	for _, n := range l.st.AgentNodes() {
		d := &DNS{}
		if cfg.DNS != nil {
			d.Nameservers = []string{l.st.Master.IP.Addr().String()}
		}
		if err := writeEtcResolv(n.Namespace, d); err != nil {
			return err
		}
	}
	l.log.Info("fabric built", "namespaces", len(l.st.Namespaces()), "took", time.Since(t0))
	if l.st.TLS {
		if err := writePKI(l.l.tlsDir(), labPKI(l.st, time.Now())); err != nil {
			return err
		}
	}
	if err := l.startDatastore(ctx); err != nil {
		return err
	}
	if err := l.createPool(ctx, cfg); err != nil {
		return err
	}
	for _, n := range cfg.Networks {
		if err := l.AddNetwork(ctx, n); err != nil {
			return err
		}
	}
	if err := l.startMesosMaster(ctx); err != nil {
		return err
	}
	if cfg.DNS != nil {
		listen := l.st.Master.IP.Addr()
		if l.st.Master.IP6.IsValid() {
			// Both families: [::] takes IPv4 too, and only the master's
			// own addresses are in its namespace.
			listen = netip.IPv6Unspecified()
		}
		argv := cfg.DNS.Args(listen, l.st.DatastoreURL(), l.st.MesosMasterURL())
		if l.st.TLS {
			argv = append(argv, l.l.tlsFiles(TLSDNSClient).TLSArgs()...)
		}
		if err := l.startMasterProcess("dns", argv); err != nil {
			return err
		}
	}
	if err := l.writeCNISetup(); err != nil {
		return err
	}
	if err := l.startAgents(ctx, l.st.AgentNodes()); err != nil {
		return err
	}
	if cfg.Console != nil {
		if err := l.startConsole(ctx, cfg.Console); err != nil {
			return err
		}
	}
	l.log.Info("lab up", "hosts", len(l.st.Hosts), "took", time.Since(t0))
	return nil
}

// claim makes the lab's state directory, records its plan in lab.json
// (before anything is built: teardown works from it) and returns with the
// lab locked. It holds a lock on the state root meanwhile, so that
// concurrent ups pick distinct fabric indexes.
func claim(cfg Config) (string, *State, *flock, error) {
	root, err := os.Open(cfg.StateRoot)
	if err != nil {
		return "", nil, nil, err
	}
	defer root.Close()
	if err := flockFile(root); err != nil {
		return "", nil, nil, fmt.Errorf("lock %s: %w", cfg.StateRoot, err)
	}
	if left, err := labNamespaces(cfg.Name); err != nil {
		return "", nil, nil, err
	} else if len(left) > 0 {
		return "", nil, nil, fmt.Errorf("namespaces %s exist (leftovers?); remove them with `tabby lab down %s`",
			strings.Join(left, ", "), cfg.Name)
	}
	idx, err := pickIndex(cfg.StateRoot, cfg.Name)
	if err != nil {
		return "", nil, nil, err
	}
	dir := stateDir(cfg.StateRoot, cfg.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", nil, nil, fmt.Errorf("lab %q already exists (see `tabby lab list`; `tabby lab down %s` removes it)", cfg.Name, cfg.Name)
		}
		return "", nil, nil, err
	}
	plan, err := MakePlan(cfg, idx, newMasterID())
	if err != nil {
		os.Remove(dir)
		return "", nil, nil, err
	}
	st := &State{
		Plan:      *plan,
		Phase:     PhaseCreating,
		Created:   time.Now().UTC().Truncate(time.Second),
		Nodes:     cfg.Nodes,
		NRacks:    cfg.Racks,
		Pool:      cfg.Pool,
		IPFamily:  cfg.IPFamily,
		Encap:     cfg.Encap,
		BinDir:    cfg.BinDir,
		DNS:       cfg.DNS != nil,
		AgentArgs: cfg.AgentArgs,
		DNSPolicy: cfg.DNSPolicy && cfg.DNS != nil,
		TLS:       cfg.TLS,
	}
	if HasIPv6(cfg.IPFamily) {
		st.Pool6 = cfg.Pool6
	}
	if err := writeJSON(layout{dir}.labJSON(), st); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	lk, err := lockLab(layout{dir})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	return dir, st, lk, nil
}

// pickIndex chooses the lowest fabric index no other lab uses, so two
// labs have distinct fabric subnets (they are isolated anyway).
func pickIndex(root, name string) (int, error) {
	used := map[int]bool{}
	entries, err := os.ReadDir(root)
	if err != nil {
		return 0, fmt.Errorf("list labs: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == name {
			continue
		}
		if st, err := readState(root, e.Name()); err == nil {
			used[st.Index] = true
		}
	}
	for i := 1; i <= 250; i++ {
		if !used[i] {
			return i, nil
		}
	}
	return 0, errors.New("250 labs exist already")
}

// newMasterID is a Mesos-style ID: a UUID.
func newMasterID() string {
	return newUUID()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (l *Lab) masterFile(name string) string { return filepath.Join(l.l.node(MasterNode), name) }

// startMasterProcess runs `tabby ARGS…` in the master namespace, logging
// to master/WHAT.log with its PID in master/WHAT.pid.
func (l *Lab) startMasterProcess(what string, args []string) error {
	_, err := l.proc.start(procSpec{
		Namespace: l.st.Master.Namespace,
		Argv:      append([]string{filepath.Join(l.st.BinDir, TabbyBinary)}, args...),
		Log:       l.masterFile(what + ".log"),
		PidFile:   l.masterFile(what + ".pid"),
	})
	if err != nil {
		return fmt.Errorf("start %s on the master: %w", what, err)
	}
	return nil
}

func (l *Lab) startDatastore(ctx context.Context) error {
	listen := l.st.DatastoreURL() + "," + l.ClientURL()
	if u := l.st.DatastoreURL6(); u != "" {
		listen += "," + u // reachable over both families
	}
	args := []string{
		"datastore", "run",
		"--data-dir", l.masterFile("etcd"),
		"--listen", listen,
		"--log-level", "warn",
	}
	if l.st.TLS {
		f := l.l.tlsFiles(tlsServer)
		args = append(args, "--cert-file", f.Cert, "--key-file", f.Key, "--trusted-ca-file", f.CA, "--client-cert-auth")
	}
	if err := l.startMasterProcess("etcd", args); err != nil {
		return err
	}
	return l.waitFor(ctx, "datastore", l.masterFile("etcd.pid"), l.masterFile("etcd.log"), func(ctx context.Context) error {
		s, err := l.connect(time.Second)
		if err != nil {
			return err
		}
		return s.Close()
	})
}

// connect opens the lab's datastore through its unix socket.
func (l *Lab) connect(timeout time.Duration) (*etcd.Store, error) {
	cfg := etcd.Config{Endpoints: []string{l.ClientURL()}, DialTimeout: timeout}
	if f, ok := l.ClientTLS(); ok {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = f.CA, f.Cert, f.Key
	}
	return etcd.Open(cfg)
}

// Store opens the lab's datastore (the caller closes it).
func (l *Lab) Store() (datastore.Store, error) { return l.connect(5 * time.Second) }

func (l *Lab) createPool(ctx context.Context, cfg Config) error {
	ipip, vxlan, err := EncapModes(cfg.Encap)
	if err != nil {
		return err
	}
	s, err := l.connect(5 * time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	var pools []*api.IPPool
	if HasIPv4(cfg.IPFamily) {
		pools = append(pools, &api.IPPool{
			TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "IPPool"},
			ObjectMeta: api.ObjectMeta{Name: PoolName},
			Spec:       api.IPPoolSpec{CIDR: cfg.Pool.String(), IPIPMode: ipip, VXLANMode: vxlan},
		})
	}
	if HasIPv6(cfg.IPFamily) {
		// IP-in-IP is IPv4 only: with --encap ipip… the IPv6 pool is
		// routed natively (BGP); --encap vxlan… carries IPv6 over VXLAN too.
		pools = append(pools, &api.IPPool{
			TypeMeta:   api.TypeMeta{APIVersion: api.APIVersion, Kind: "IPPool"},
			ObjectMeta: api.ObjectMeta{Name: Pool6Name},
			Spec:       api.IPPoolSpec{CIDR: cfg.Pool6.String(), IPIPMode: api.EncapNever, VXLANMode: vxlan},
		})
	}
	for _, pool := range pools {
		if _, err := datastore.NewClient(s).Create(ctx, pool); err != nil {
			return fmt.Errorf("create the default IPPool %s: %w", pool.Spec.CIDR, err)
		}
	}
	return nil
}

func (l *Lab) startMesosMaster(ctx context.Context) error {
	listen := netip.AddrPortFrom(l.st.Master.IP.Addr(), MesosPort).String()
	if err := l.startMasterProcess("mesos", []string{"lab", "mesos-master", "--state-dir", l.l.dir, "--listen", listen}); err != nil {
		return err
	}
	return l.waitFor(ctx, "mesos master state", l.masterFile("mesos.pid"), l.masterFile("mesos.log"), func(ctx context.Context) error {
		c, err := DialIn(ctx, l.st.Master.Namespace, "tcp", listen)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// waitFor polls check until it succeeds, the process in pidFile dies (the
// error then quotes its log) or the ready timeout passes.
func (l *Lab) waitFor(ctx context.Context, what, pidFile, logFile string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, l.ready)
	defer cancel()
	p, err := readPidFile(pidFile)
	if err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	var last error
	for {
		cctx, c := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		c()
		if last == nil {
			return nil
		}
		if !p.alive() {
			p.reap()
			return fmt.Errorf("%s exited before it was ready (log %s):\n%s", what, logFile, tail(logFile, 15))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %v (log %s):\n%s", what, l.ready, last, logFile, tail(logFile, 15))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Open returns the existing lab name under root.
func Open(root, name string) (*Lab, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if root == "" {
		root = DefaultStateRoot
	}
	st, err := readState(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %q does not exist (`tabby lab list` shows the labs)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", name, err)
	}
	ipCmd, err := findIP()
	if err != nil {
		return nil, err
	}
	return &Lab{
		root:  root,
		l:     layout{stateDir(root, name)},
		st:    st,
		proc:  starter{ip: ipCmd},
		log:   slog.New(slog.DiscardHandler),
		ready: DefaultReadyTimeout,
	}, nil
}

// SetLogger sets where progress is logged.
func (l *Lab) SetLogger(log *slog.Logger) {
	if log != nil {
		l.log = log.With("component", "lab", "lab", l.st.Name)
	}
}

// Summary is one line of `tabby lab list`.
type Summary struct {
	Name       string       `json:"name"`
	Phase      string       `json:"phase"`
	Nodes      int          `json:"nodes"`
	Racks      int          `json:"racks"`
	Pool       netip.Prefix `json:"pool"`
	IPFamily   string       `json:"ipFamily"`
	Pool6      netip.Prefix `json:"pool6,omitzero"`
	Encap      string       `json:"encap"`
	Master     netip.Addr   `json:"master"`
	Containers int          `json:"containers"`
	Created    time.Time    `json:"created"`
}

// List lists the labs under root.
func List(root string) ([]Summary, error) {
	if root == "" {
		root = DefaultStateRoot
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var out []Summary
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := readState(root, e.Name())
		if err != nil {
			continue
		}
		cs, _ := readContainers(layout{stateDir(root, e.Name())})
		out = append(out, Summary{
			Name: st.Name, Phase: st.Phase, Nodes: st.Nodes, Racks: st.NRacks, Pool: st.Pool,
			IPFamily: st.Family(), Pool6: st.Pool6,
			Encap: st.Encap, Master: st.Master.IP.Addr(), Containers: len(cs), Created: st.Created,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Down removes lab name under root: its processes, namespaces, mounts
// and files. It also cleans up the leftovers of a lab whose state is lost
// (namespaces named after it). A lab that does not exist is an error.
func Down(ctx context.Context, root, name string, log *slog.Logger) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if root == "" {
		root = DefaultStateRoot
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := stateDir(root, name)
	_, statErr := os.Stat(dir)
	left, err := labNamespaces(name)
	if err != nil {
		return err
	}
	if errors.Is(statErr, fs.ErrNotExist) && len(left) == 0 && len(netnsEtcDirs(name)) == 0 {
		return fmt.Errorf("lab %q does not exist (`tabby lab list` shows the labs)", name)
	}
	var lk *flock
	if statErr == nil {
		if lk, err = lockLab(layout{dir}); err != nil {
			return err
		}
		defer lk.unlock()
	}
	return teardown(ctx, root, name, log.With("component", "lab", "lab", name))
}

// teardown removes everything of lab name, in reverse order of creation,
// and is safe on a partly built or already removed lab.
func teardown(_ context.Context, root, name string, log *slog.Logger) error {
	l := layout{stateDir(root, name)}
	var errs []error
	if st, err := readState(root, name); err == nil {
		st.Phase = PhaseDeleting
		_ = writeJSON(l.labJSON(), st)
	}
	nss, err := labNamespaces(name)
	if err != nil {
		errs = append(errs, err)
	}
	// 1. Containers' processes, then the daemons, each by recorded PID.
	var pidFiles []string
	if cs, err := os.ReadDir(filepath.Join(l.dir, "containers")); err == nil {
		for _, c := range cs {
			pidFiles = append(pidFiles, filepath.Join(l.container(c.Name()), "pid"))
		}
	}
	stopFiles := func(files []string) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := stopPidFile(f, 5*time.Second); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop %s: %w", f, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	stopFiles(pidFiles)
	agents, _ := filepath.Glob(filepath.Join(l.dir, "*", "agent.pid"))
	stopFiles(agents)
	stopFiles([]string{filepath.Join(l.dir, MasterNode, "dns.pid"), filepath.Join(l.dir, MasterNode, "mesos.pid"), consolePidFile(l.dir)})
	stopFiles([]string{filepath.Join(l.dir, MasterNode, "etcd.pid")})
	// 2. Anything else still running inside the lab's namespaces.
	inodes := map[uint64]bool{}
	for _, ns := range nss {
		if ino, err := nsInode(nsPath(ns)); err == nil {
			inodes[ino] = true
		}
	}
	if ps := procsInNamespaces(inodes); len(ps) > 0 {
		log.Info("stopping leftover processes in the lab's namespaces", "count", len(ps))
		if err := stopAll(ps, 3*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// 3. Mounts under the state directory (Mesos-style netns handles).
	for _, mp := range mountsUnder(l.dir) {
		if err := unmount(mp); err != nil {
			errs = append(errs, err)
		}
	}
	// 4. Namespaces: containers first, then the infrastructure.
	sort.Slice(nss, func(i, j int) bool {
		ci := strings.HasPrefix(nss[i], NamespacePrefix(name)+"c-")
		cj := strings.HasPrefix(nss[j], NamespacePrefix(name)+"c-")
		if ci != cj {
			return ci
		}
		return nss[i] > nss[j]
	})
	for _, ns := range nss {
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
		}
	}
	// 5. Files: /etc/netns/tlab-NAME-*, then the state directory.
	for _, d := range netnsEtcDirs(name) {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(l.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", l.dir, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down %s: %w", name, errors.Join(errs...))
	}
	log.Info("lab removed")
	return nil
}

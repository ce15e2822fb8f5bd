package lab

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
)

// ConsolePort is where the master's web console (`tabby console`) listens
// on the master's fabric address.
const ConsolePort = 9098

// ConsoleConfig says how to start `tabby console` on the master. Args
// builds its arguments (after "tabby") from the address to listen on, the
// datastore URL on the fabric and the lab's state directory.
type ConsoleConfig struct {
	Args func(listen netip.AddrPort, datastoreURL, labDir string) []string
}

// consolePid is the console's pid file on the master.
func (l *Lab) consolePid() string { return l.masterFile("console.pid") }

// startConsole runs the web console on the master and waits until it
// serves.
func (l *Lab) startConsole(ctx context.Context, c *ConsoleConfig) error {
	listen := netip.AddrPortFrom(l.st.Master.IP.Addr(), ConsolePort)
	argv := c.Args(listen, l.st.DatastoreURL(), l.l.dir)
	if l.st.TLS {
		argv = append(argv, l.l.tlsFiles(TLSRootClient).TLSArgs()...)
	}
	if err := l.startMasterProcess("console", argv); err != nil {
		return err
	}
	return l.waitFor(ctx, "web console", l.consolePid(), l.masterFile("console.log"), func(ctx context.Context) error {
		c, err := DialIn(ctx, l.st.Master.Namespace, "tcp", listen.String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// ConsoleAddr is the master's web console on the fabric (reach it from
// inside the lab: HTTPClientIn(State().Master.Namespace)); false when the
// lab runs none.
func (l *Lab) ConsoleAddr() (netip.AddrPort, bool) {
	if _, err := os.Stat(l.consolePid()); err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(l.st.Master.IP.Addr(), ConsolePort), true
}

// consolePidFile is the pid file teardown stops with the master's services.
func consolePidFile(dir string) string { return filepath.Join(dir, MasterNode, "console.pid") }

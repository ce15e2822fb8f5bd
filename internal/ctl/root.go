// Package ctl implements the tabby command line: resource verbs (apply,
// create, replace, delete, get), ipam, node, lab and the daemons (agent,
// datastore run, dns). Flags, environment and files are merged here and
// nowhere else; the packages it calls take config structs.
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
)

// DefaultDatastore is used when neither --datastore nor TABBY_DATASTORE is set.
const DefaultDatastore = "http://127.0.0.1:2379"

// globals are the flags every command shares.
type globals struct {
	datastore string
	lab       string
	etcdCA    string
	etcdCert  string
	etcdKey   string
	timeout   time.Duration
	// requestTimeout bounds each datastore request (0: etcd's default);
	// the agent sets it so that CNI requests fail fast in an outage.
	requestTimeout time.Duration
	stdin          io.Reader
	stdout         io.Writer
	stderr         io.Writer
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, "error:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// exitError ends the command with a given code (and an optional message).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "tabby",
		Short:         "Tabby: a routable IP per container, BGP between hosts, label-based policy, DNS discovery",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.datastore, "datastore", "", "etcd endpoints, comma separated (env TABBY_DATASTORE; default "+DefaultDatastore+")")
	pf.StringVar(&g.lab, "lab", "", "use the datastore of the named lab")
	pf.StringVar(&g.etcdCA, "etcd-ca", "", "CA certificate for etcd TLS (env TABBY_ETCD_CA)")
	pf.StringVar(&g.etcdCert, "etcd-cert", "", "client certificate for etcd TLS (env TABBY_ETCD_CERT)")
	pf.StringVar(&g.etcdKey, "etcd-key", "", "client key for etcd TLS (env TABBY_ETCD_KEY)")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "how long to wait for the datastore")
	for _, c := range append(commands(g), resourceCommands(g)...) {
		root.AddCommand(c)
	}
	return root
}

// commands lists every top-level command.
func commands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newVersionCommand(g),
		newAgentCommand(g),
		newDNSCommand(g),
		newDatastoreCommand(g),
		newLabCommand(g),
		newIPAMCommand(g),
		newNodeCommand(g),
		newFlowsCommand(g),
		newConsoleCommand(g),
	}
}

// etcdConfig merges flags and environment into the datastore connection config.
func (g *globals) etcdConfig() (etcd.Config, error) {
	urls := firstNonEmpty(g.datastore, os.Getenv("TABBY_DATASTORE"))
	if g.lab != "" {
		if urls != "" {
			return etcd.Config{}, fmt.Errorf("--lab and --datastore are exclusive")
		}
		var err error
		if urls, err = labDatastore(g.lab); err != nil {
			return etcd.Config{}, err
		}
	}
	if urls == "" {
		urls = DefaultDatastore
	}
	cfg := etcd.Config{
		CAFile:         firstNonEmpty(g.etcdCA, os.Getenv("TABBY_ETCD_CA")),
		CertFile:       firstNonEmpty(g.etcdCert, os.Getenv("TABBY_ETCD_CERT")),
		KeyFile:        firstNonEmpty(g.etcdKey, os.Getenv("TABBY_ETCD_KEY")),
		DialTimeout:    g.timeout,
		RequestTimeout: g.requestTimeout,
	}
	if g.lab != "" && cfg.CAFile == "" && cfg.CertFile == "" {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = labTLS(g.lab)
	}
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.Endpoints = append(cfg.Endpoints, u)
		}
	}
	return cfg, nil
}

// connect opens the datastore the flags name.
func (g *globals) connect() (datastore.Store, error) {
	cfg, err := g.etcdConfig()
	if err != nil {
		return nil, err
	}
	return etcd.New(cfg)
}

// labDatastore returns the datastore URL of a running lab. (Filled in by the lab.)
var labDatastore = func(name string) (string, error) {
	return "", fmt.Errorf("lab %q: labs are not available in this build", name)
}

// labTLS returns the CA, client certificate and key with which the CLI
// reaches a lab's datastore ("" when it needs none). (Filled in by the lab.)
var labTLS = func(name string) (ca, cert, key string) { return "", "", "" }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// A TLS lab (Config.TLS) runs as a production install does: the datastore
// serves only TLS (https:// on the fabric, unixs:// for the root
// namespace) and requires a client certificate signed by the lab's CA;
// every agent, the DNS server and the root namespace (the lab itself and
// `tabby --lab`) get a certificate of their own. Up generates the CA and
// the certificates (ECDSA P-256, crypto/x509) into STATE/tls/; the CA's
// private key is never written anywhere, so nothing can issue more.

// Names in the lab's tls directory.
const (
	tlsDirName = "tls"
	tlsCAFile  = "ca.pem"
	// tlsServer is the datastore's certificate (etcd.pem, etcd-key.pem).
	tlsServer = "etcd"
	// TLSRootClient is the certificate of the root namespace: the lab
	// itself and the CLI (`tabby --lab NAME`).
	TLSRootClient = "root"
	// TLSDNSClient is the certificate of `tabby dns` on the master.
	TLSDNSClient = "dns"
	// tlsAgentPrefix + node name is an agent's certificate.
	tlsAgentPrefix = "agent-"
	// tlsValidity is how long the lab's certificates are valid.
	tlsValidity = 365 * 24 * time.Hour
)

// TLSFiles are the files a datastore client presents: the CA that signs
// the server's certificate, and its own certificate and key.
type TLSFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

func (l layout) tlsDir() string { return filepath.Join(l.dir, tlsDirName) }

// tlsFiles are the files of certificate holder who.
func (l layout) tlsFiles(who string) TLSFiles {
	d := l.tlsDir()
	return TLSFiles{CA: filepath.Join(d, tlsCAFile), Cert: filepath.Join(d, who+".pem"), Key: filepath.Join(d, who+"-key.pem")}
}

// TLSArgs are the datastore flags of a tabby command using these files.
func (f TLSFiles) TLSArgs() []string {
	return []string{"--etcd-ca", f.CA, "--etcd-cert", f.Cert, "--etcd-key", f.Key}
}

// ClientTLS returns the root namespace's certificate files when the lab's
// datastore requires TLS (false otherwise).
func (l *Lab) ClientTLS() (TLSFiles, bool) {
	if !l.st.TLS {
		return TLSFiles{}, false
	}
	return l.l.tlsFiles(TLSRootClient), true
}

// AgentTLS returns the certificate files of a node's agent when the lab's
// datastore requires TLS (false otherwise, or for an unknown node).
func (l *Lab) AgentTLS(node string) (TLSFiles, bool) {
	n, ok := l.st.Node(node)
	if !l.st.TLS || !ok {
		return TLSFiles{}, false
	}
	return l.l.tlsFiles(tlsAgentPrefix + n.Name), true
}

// pkiSpec says which certificates a lab needs.
type pkiSpec struct {
	// Lab names the CA ("tabby lab NAME CA").
	Lab string
	// ServerIPs and ServerNames are the datastore certificate's subject
	// alternative names: the master's fabric address, and the socket's
	// file name (what an etcd client verifies on a unixs:// endpoint).
	ServerIPs   []netip.Addr
	ServerNames []string
	// Clients are the client certificates' holders (file names).
	Clients []string
	Now     time.Time
}

// labPKI is the spec of the lab with state st.
func labPKI(st *State, now time.Time) pkiSpec {
	s := pkiSpec{
		Lab:         st.Name,
		ServerIPs:   serverIPs(st),
		ServerNames: []string{etcdSocket, "localhost"},
		Clients:     []string{TLSRootClient, TLSDNSClient},
		Now:         now,
	}
	for _, n := range st.AgentNodes() {
		s.Clients = append(s.Clients, tlsAgentPrefix+n.Name)
	}
	return s
}

// writePKI creates dir (mode 0700) holding a new CA's certificate, the
// datastore's server certificate and one client certificate per client,
// each with its key (mode 0600). The CA key stays in memory.
func writePKI(dir string, s pkiSpec) error {
	if len(s.ServerIPs) == 0 && len(s.ServerNames) == 0 {
		return errors.New("tls: the server certificate needs an address or a name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tls: CA key: %w", err)
	}
	caTmpl, err := certTemplate("tabby lab "+s.Lab+" CA", s.Now)
	if err != nil {
		return err
	}
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.MaxPathLenZero = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("tls: create the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := writePEM(filepath.Join(dir, tlsCAFile), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	// The server certificate also authenticates as a client: etcd's gRPC
	// gateway dials the server with it.
	server, err := certTemplate("tabby lab "+s.Lab+" datastore", s.Now)
	if err != nil {
		return err
	}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	server.DNSNames = s.ServerNames
	for _, a := range s.ServerIPs {
		server.IPAddresses = append(server.IPAddresses, net.IP(a.AsSlice()))
	}
	if err := issue(dir, tlsServer, server, ca, caKey); err != nil {
		return err
	}
	for _, c := range s.Clients {
		tmpl, err := certTemplate(c, s.Now)
		if err != nil {
			return err
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if err := issue(dir, c, tmpl, ca, caKey); err != nil {
			return err
		}
	}
	return nil
}

// certTemplate is a leaf certificate for cn valid from an hour before now
// (clocks of the lab are the machine's, but be lenient) for tlsValidity.
func certTemplate(cn string, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls: serial number: %w", err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"tabby lab"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(tlsValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}, nil
}

// issue signs tmpl with the CA and writes NAME.pem and NAME-key.pem.
func issue(dir, name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tls: key of %s: %w", name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("tls: certificate of %s: %w", name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls: key of %s: %w", name, err)
	}
	if err := writePEM(filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	return nil
}

// serverIPs are the addresses the datastore's certificate names: the
// master's fabric addresses and loopback.
func serverIPs(st *State) []netip.Addr {
	ips := []netip.Addr{st.Master.IP.Addr(), netip.MustParseAddr("127.0.0.1")}
	if st.Master.IP6.IsValid() {
		ips = append(ips, st.Master.IP6.Addr())
	}
	return ips
}

// Command vmferry-peer is vmferry's vSphere test peer: vcsim (govmomi's
// vCenter simulator) extended with real disk contents, snapshot freeze
// semantics, change tracking, guest writes on demand, counters, HTTPS and
// fault injection. See README.md in this directory.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

var logger = log.New(os.Stderr, "vmferry-peer: ", log.LstdFlags|log.Lmicroseconds)

func logf(format string, args ...interface{}) { logger.Printf(format, args...) }

func statSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1/localhost.
// loadCert serves a fixed certificate, so that a config can pin its
// thumbprint across restarts (the demo set-up does).
func loadCert(certFile, keyFile string) (tls.Certificate, string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, thumbprint(cert.Certificate[0]), nil
}

func thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(hexes, ":")
}

func selfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vmferry-peer", Organization: []string{"vmferry test peer"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, thumbprint(der), nil
}

// httpsServer serves the SOAP and /folder front and can go away for an
// outage and come back on the same port.
type httpsServer struct {
	mu       sync.Mutex
	addr     string
	handler  http.Handler
	tlsCfg   *tls.Config
	srv      *http.Server
	timer    *time.Timer
	down     bool
	original tls.Certificate // the certificate the peer started with
	cert     tls.Certificate // the one served now (a "cert" fault replaces it)
	thumb    string
}

func (s *httpsServer) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cert
	return &c, nil
}

// setCert serves cert from now on and closes every open connection, so
// that clients meet it on their next request (as after a vCenter restart
// with a renewed certificate). Returns the thumbprint served.
func (s *httpsServer) setCert(cert tls.Certificate) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert = cert
	s.thumb = thumbprint(cert.Certificate[0])
	if !s.down {
		s.srv.Close()
		if err := s.listen(); err != nil {
			logf("cert: cannot listen again on %s: %v", s.addr, err)
			s.down = true
		}
	}
	logf("cert: now serving %s", s.thumb)
	return s.thumb
}

func (s *httpsServer) thumbprint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.thumb
}

func (s *httpsServer) listen() error {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(os.Stderr, "vmferry-peer https: ", log.LstdFlags),
	}
	go s.srv.Serve(tls.NewListener(ln, s.tlsCfg))
	return nil
}

// outage closes the listener and every connection for d.
func (s *httpsServer) outage(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down {
		s.srv.Close()
		s.down = true
		logf("outage: https listener closed for %v", d)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timer = time.AfterFunc(d, s.endOutage)
}

func (s *httpsServer) endOutage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !s.down {
		return
	}
	if err := s.listen(); err != nil {
		logf("outage: cannot listen again on %s: %v", s.addr, err)
		return
	}
	s.down = false
	logf("outage over: listening on %s", s.addr)
}

func (s *httpsServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if !s.down {
		s.srv.Close()
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hardware" {
		os.Exit(hardwareQuery(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "bootdisk" {
		os.Exit(bootDisk(os.Args[2:]))
	}
	var (
		fixtureFile = flag.String("fixture", "", "fixture JSON file (default: DC0/H0/ds0, no VMs)")
		port        = flag.Int("port", 0, "HTTPS port on 127.0.0.1 (0 = any free port)")
		dir         = flag.String("dir", "", "directory holding the datastores (default: a fresh temp dir, removed on exit)")
		user        = flag.String("user", "user", "login user name")
		password    = flag.String("password", "pass", "login password")
		cbtMax      = flag.Int("cbt-max-extents", 64, "max extents per QueryChangedDiskAreas reply")
		maxObjects  = flag.Int("max-objects", 0, "server cap on objects per RetrievePropertiesEx page (0 = none)")
		ctlPort     = flag.Int("control-port", 0, "control HTTP port on 127.0.0.1 (0 = any free port)")
		keep        = flag.Bool("keep", false, "keep the temp dir on exit")
		certFile    = flag.String("cert", "", "PEM certificate to serve (default: a fresh self-signed one)")
		keyFile     = flag.String("key", "", "PEM private key for --cert")
	)
	flag.Parse()
	if *cbtMax < 1 {
		fmt.Fprintln(os.Stderr, "vmferry-peer: --cbt-max-extents must be >= 1")
		os.Exit(2)
	}
	if *maxObjects < 0 {
		fmt.Fprintln(os.Stderr, "vmferry-peer: --max-objects must be >= 0")
		os.Exit(2)
	}
	if os.Getenv("VMFERRY_PEER_TRACE") != "" {
		simulator.Trace = true
	}

	fx, err := loadFixture(*fixtureFile)
	if err != nil {
		logf("%v", err)
		os.Exit(2)
	}
	tempDir := false
	if *dir == "" {
		d, err := os.MkdirTemp("", "vmferry-peer-")
		if err != nil {
			logf("%v", err)
			os.Exit(1)
		}
		*dir, tempDir = d, !*keep
	} else if err := os.MkdirAll(*dir, 0755); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
	if abs, err := filepath.Abs(*dir); err == nil {
		*dir = abs
	}
	var p *Peer
	fail := func(format string, args ...interface{}) {
		logf(format, args...)
		if p != nil {
			p.hotadd.close()
		}
		if tempDir {
			os.RemoveAll(*dir)
		}
		os.Exit(1)
	}

	p = newPeer(*dir, *user, *password, *cbtMax, *maxObjects)
	start := time.Now()
	if err := p.build(fx); err != nil {
		fail("fixture: %v", err)
	}
	if fx.Appliance != "" {
		if err := p.setupHotadd(fx.Appliance); err != nil {
			fail("fixture: %v", err)
		}
	}

	// vcsim's own server registers the SOAP endpoints and the login check;
	// it is closed right away and its mux reused behind our TLS listener.
	p.svc.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *password)}
	vs := p.svc.NewServer()
	vs.Close()

	cert, thumb, err := selfSigned()
	if *certFile != "" {
		cert, thumb, err = loadCert(*certFile, *keyFile)
	}
	if err != nil {
		fail("certificate: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/sdk", p.serveSDK)
	mux.HandleFunc("/sdk/vimService", p.serveSDK)
	mux.HandleFunc("/folder", p.serveFolder)
	mux.HandleFunc("/folder/", p.serveFolder)
	mux.Handle("/", p.svc.ServeMux)
	p.https = &httpsServer{
		addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)),
		handler:  mux,
		original: cert,
		cert:     cert,
		thumb:    thumb,
	}
	p.https.tlsCfg = &tls.Config{GetCertificate: p.https.getCertificate, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	if err := p.https.listen(); err != nil {
		fail("https listen: %v", err)
	}
	simulator.Map.SessionManager().ServiceHostName = p.https.addr

	cln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*ctlPort)))
	if err != nil {
		fail("control listen: %v", err)
	}
	csrv := &http.Server{Handler: p.controlHandler(), ReadHeaderTimeout: 30 * time.Second}
	go csrv.Serve(cln)

	type helloLine struct {
		URL           string `json:"url"`
		Thumbprint    string `json:"thumbprint"`
		ControlURL    string `json:"control_url"`
		Dir           string `json:"dir"`
		HotaddDir     string `json:"hotadd_dir,omitempty"`
		HotaddError   string `json:"hotadd_error,omitempty"`
		ApplianceUUID string `json:"appliance_uuid,omitempty"`
	}
	hl := helloLine{URL: "https://" + p.https.addr + "/sdk", Thumbprint: thumb, ControlURL: "http://" + cln.Addr().String(), Dir: *dir}
	if h := p.hotadd; h != nil {
		hl.ApplianceUUID = h.uuid
		if h.fs != nil {
			hl.HotaddDir = h.dir
		} else {
			hl.HotaddError = h.mountErr
		}
	}
	// Signals are caught before anyone learns the peer is up: a SIGTERM
	// sent right after the hello line must still unmount the hot-add
	// directory (Go's default action would exit on the spot).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	hello, _ := json.Marshal(hl)
	os.Stdout.Write(append(hello, '\n'))
	os.Stdout.Sync()
	logf("ready in %v: %s", time.Since(start).Round(time.Millisecond), hello)

	s := <-sig
	logf("%v: shutting down", s)
	p.https.close()
	csrv.Close()
	p.hotadd.close()
	if tempDir {
		os.RemoveAll(*dir)
	}
	os.Exit(0)
}

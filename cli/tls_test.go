package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/client"
)

// tlsTestCert writes a fresh self-signed ECDSA P-256 certificate valid for
// the IP addresses ips and DNS names dns, and its key, as PEM files in dir.
func tlsTestCert(t *testing.T, dir, name string, ips []net.IP, dns []string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// startServeArgs runs `keyline serve` in process on a free loopback port
// with extra flags and returns its address, its stderr and a stop function.
func startServeArgs(t *testing.T, dataDir string, extra ...string) (string, *syncBuf, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int, 1)
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--epoch-interval", "20ms", "--insecure-no-sync"}, extra...)
	go func() {
		done <- Run(ctx, args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("serve exited %d: %s", code, errb.String())
				}
			}
			t.Cleanup(stop)
			return m[1], &errb, stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d before listening:\n%s\n%s", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runTLS runs one keyline command line with a short request timeout.
func runTLS(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := Run(ctx, append([]string{"--timeout", "3s"}, args...), IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	return result{out.String(), errb.String(), code}
}

func TestServeTLS(t *testing.T) {
	root := t.TempDir()
	certPath, keyPath := tlsTestCert(t, root, "directory", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	otherCA, _ := tlsTestCert(t, root, "other", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	srvDir := filepath.Join(root, "server")
	addr, serveErr, stop := startServeArgs(t, srvDir, "--tls-cert", certPath, "--tls-key", keyPath)
	trust := filepath.Join(srvDir, "trust.json")
	if strings.Contains(serveErr.String(), "unencrypted") {
		t.Errorf("serve with TLS warns about plaintext:\n%s", serveErr.String())
	}

	// Publish an account over TLS with the directory client.
	caPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c, err := client.Dial(addr, client.WithTLS(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rk := devices.DeriveRootKey(devices.RecoverySecret{1, 2, 3})
	ask, err := devices.NewAccountSigningKey(rk, "alice", 1, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := dk.NewCert("laptop", rk.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := devices.NewAccount(ask, rk.Public(), "alice", cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Update(ctx, enc); err != nil {
		t.Fatalf("update over TLS: %v", err)
	}

	base := func(dev string) []string {
		return []string{"--server", addr, "--trust", trust, "--data-dir", filepath.Join(root, dev)}
	}

	// A verified lookup over TLS, trusting the self-signed certificate.
	r := runTLS(t, append(base("bob"), "--json", "--tls-ca", certPath, "lookup", "alice")...)
	if r.code != ExitOK {
		t.Fatalf("lookup with --tls-ca: exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	var l lookupJSON
	if err := json.Unmarshal([]byte(r.out), &l); err != nil {
		t.Fatalf("lookup --json output: %v\n%s", err, r.out)
	}
	if !l.Found || !l.Verified || l.UserID != "alice" {
		t.Fatalf("lookup over TLS: %+v", l)
	}

	// The same through a config file, with the server name given explicitly.
	cfg := filepath.Join(root, "keyline.conf")
	if err := os.WriteFile(cfg, []byte("tls-ca = "+certPath+"\ntls_server_name = 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runTLS(t, append(base("carol"), "--config", cfg, "lookup", "alice")...); r.code != ExitOK {
		t.Fatalf("lookup with tls-ca in the config file: exit %d\n%s\n%s", r.code, r.out, r.err)
	}

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string // in stderr
	}{
		{"plaintext client", nil, []string{"cannot reach directory at " + addr, "--tls"}},
		{"wrong CA", []string{"--tls-ca", otherCA}, []string{"cannot reach directory at " + addr, "certificate", "--tls-ca"}},
		{"system roots", []string{"--tls"}, []string{"cannot reach directory at " + addr, "certificate"}},
		{"wrong server name", []string{"--tls-ca", certPath, "--tls-server-name", "directory.example"}, []string{"cannot reach directory at " + addr, "directory.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(base("dave-"+strings.ReplaceAll(tc.name, " ", "-")), tc.flags...)
			r := runTLS(t, append(args, "lookup", "alice")...)
			if r.code != ExitNetwork {
				t.Fatalf("exit %d, want %d (network)\n%s\n%s", r.code, ExitNetwork, r.out, r.err)
			}
			t.Logf("stderr: %s", r.err)
			for _, w := range tc.want {
				if !strings.Contains(r.err, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.err)
				}
			}
			if strings.Contains(r.out, "alice") {
				t.Errorf("a failed lookup printed a result:\n%s", r.out)
			}
		})
	}

	// A --tls-ca file without a certificate is a usage error.
	junk := filepath.Join(root, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runTLS(t, append(base("erin"), "--tls-ca", junk, "lookup", "alice")...); r.code != ExitUsage || !strings.Contains(r.err, "no PEM CERTIFICATE") {
		t.Errorf("--tls-ca junk: exit %d\n%s", r.code, r.err)
	}
	stop()
}

func TestServePlaintextWarnsAndTLSFlagsPair(t *testing.T) {
	root := t.TempDir()
	addr, serveErr, _ := startServeArgs(t, filepath.Join(root, "server"))
	if !strings.Contains(serveErr.String(), "warning") || !strings.Contains(serveErr.String(), "unencrypted") || !strings.Contains(serveErr.String(), addr) {
		t.Errorf("plaintext serve does not warn:\n%s", serveErr.String())
	}
	if n := strings.Count(strings.TrimSpace(serveErr.String()), "\n"); n != 0 {
		t.Errorf("the plaintext warning is not one line:\n%s", serveErr.String())
	}

	certPath, keyPath := tlsTestCert(t, root, "directory", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	// A TLS client against the plaintext directory fails as a network error.
	r := runTLS(t, "--server", addr, "--trust", filepath.Join(root, "server", "trust.json"), "--data-dir", filepath.Join(root, "c"), "--tls-ca", certPath, "lookup", "alice")
	if r.code != ExitNetwork {
		t.Errorf("TLS client to plaintext server: exit %d\n%s", r.code, r.err)
	}
	for _, args := range [][]string{
		{"--tls-cert", certPath},
		{"--tls-key", keyPath},
	} {
		r := runTLS(t, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(root, "s2"), "--insecure-no-sync"}, args...)...)
		if r.code != ExitUsage || !strings.Contains(r.err, "--tls-cert and --tls-key go together") {
			t.Errorf("serve %v: exit %d\n%s", args, r.code, r.err)
		}
	}
	// A key that does not match the certificate is refused at start.
	_, otherKey := tlsTestCert(t, root, "other", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	r = runTLS(t, "serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(root, "s3"), "--insecure-no-sync", "--tls-cert", certPath, "--tls-key", otherKey)
	if r.code != ExitError || !strings.Contains(r.err, "cannot load the TLS certificate") {
		t.Errorf("serve with a mismatched key: exit %d\n%s", r.code, r.err)
	}
}

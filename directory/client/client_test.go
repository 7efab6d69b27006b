package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
)

func TestIsLoopbackTarget(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:7411":                 true,
		"127.3.4.5:7411":                 true,
		"[::1]:7411":                     true,
		"localhost:7411":                 true,
		"LOCALHOST:7411":                 true,
		"dns:///localhost:7411":          true,
		"dns://8.8.8.8/127.0.0.1:7411":   true,
		"passthrough:///127.0.0.1:7411":  true,
		"unix:///run/keyline.sock":       true,
		"127.0.0.1":                      true,
		"10.0.0.1:7411":                  false,
		"[2001:db8::1]:7411":             false,
		"keyline.example:7411":           false,
		"localhost.example.com:7411":     false,
		"dns:///keyline.example:443":     false,
		"passthrough:///192.0.2.1:7411":  false,
		"":                               false,
		"0.0.0.0:7411":                   false,
		"127.0.0.1.keyline.example:7411": false,
	} {
		if got := client.IsLoopbackTarget(target); got != want {
			t.Errorf("IsLoopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}

// testCert returns a self-signed ECDSA P-256 certificate for dnsName and
// 127.0.0.1, and a pool trusting it.
func testCert(t *testing.T, dnsName string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: dnsName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{dnsName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// serve runs a directory on a loopback port with the given server options
// and returns its address.
func serve(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	s, err := directory.Open(directory.Config{DataDir: t.TempDir(), EpochInterval: 10 * time.Millisecond, NoSync: true, AdminToken: "right-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis, opts...)
	return lis.Addr().String()
}

// redirect dials addr whatever the target says, so that a client can use a
// non-loopback target name while the test server listens on loopback.
func redirect(addr string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}

func resetState(t *testing.T) []byte {
	t.Helper()
	rk := devices.DeriveRootKey(devices.RecoverySecret{7})
	ask, err := devices.NewAccountSigningKey(rk, "mallory", 1, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert("phone", rk.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := devices.NewAccount(ask, rk.Public(), "mallory", c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResetAdminTokenTransport checks where Reset sends the admin token: a
// wrong token must reach the directory (PERMISSION_DENIED) over TLS and over
// plaintext loopback, and must not leave the client over plaintext to a
// non-loopback target.
func TestResetAdminTokenTransport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := resetState(t)
	cert, pool := testCert(t, "keyline.example")
	tlsAddr := serve(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	plainAddr := serve(t)

	dial := func(target string, opts ...grpc.DialOption) *client.Client {
		c, err := client.Dial(target, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	reachesServer := func(name string, c *client.Client) {
		t.Helper()
		_, err := c.Reset(ctx, "wrong-token", "mallory", state, "lost")
		if apierr.Reason(err) != apierr.PermissionDenied {
			t.Errorf("%s: Reset = %v, want the directory's %s (the token reached it)", name, err, apierr.PermissionDenied)
		}
		if errors.Is(err, client.ErrPlaintextAdminToken) {
			t.Errorf("%s: refused as plaintext", name)
		}
	}
	reachesServer("plaintext loopback", dial(plainAddr))
	reachesServer("plaintext localhost", dial("localhost:1", redirect(plainAddr)))
	reachesServer("TLS, non-loopback name", dial("passthrough:///keyline.example:7411", redirect(tlsAddr), client.WithTLS(&tls.Config{RootCAs: pool})))
	reachesServer("TLS via grpc.WithTransportCredentials", dial("passthrough:///keyline.example:7411", redirect(tlsAddr),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}))))

	// Plaintext to a non-loopback name: refused before sending.
	c := dial("passthrough:///keyline.example:7411", redirect(plainAddr))
	if _, err := c.Reset(ctx, "right-token", "mallory", state, "lost"); !errors.Is(err, client.ErrPlaintextAdminToken) {
		t.Fatalf("plaintext non-loopback Reset = %v, want ErrPlaintextAdminToken", err)
	}
	// The same connection still serves unauthenticated reads.
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint over the same plaintext connection: %v", err)
	}
	// And the token was never accepted: the account does not exist.
	b, err := dial(plainAddr).Lookup(ctx, "mallory", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.AccountUpdate) != 0 {
		t.Fatal("the refused reset reached the directory")
	}
}

// TestWithTLSRequiresTLS13 checks that WithTLS refuses a TLS 1.2-only server.
func TestWithTLSRequiresTLS13(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cert, pool := testCert(t, "keyline.example")
	addr := serve(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})))
	c, err := client.Dial(addr, client.WithTLS(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Checkpoint(ctx); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("Checkpoint from a TLS 1.2 server = %v, want Unavailable", err)
	}
	// With TLS 1.2 allowed explicitly it works, so the failure above was the version.
	c2, err := client.Dial(addr, client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint with TLS 1.2 allowed: %v", err)
	}
}

package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/client"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// exampleDirectory runs a directory on a free loopback port, as `keyline
// serve` does, and returns a gRPC client for it, the trust configuration
// clients get from its trust.json, and a function that stops it all.
func exampleDirectory(dir string) (*client.Client, *verifier.Trust, func()) {
	srv, err := directory.Open(directory.Config{
		DataDir:       filepath.Join(dir, "server"),
		EpochInterval: 10 * time.Millisecond,
		NoSync:        true,
	})
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	g := srv.NewGRPCServer()
	go g.Serve(lis)
	conn, err := client.Dial(lis.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	// A client gets trust.json out of band; here straight from the server.
	tf, err := json.Marshal(srv.Trust())
	if err != nil {
		log.Fatal(err)
	}
	trust, err := verifier.ParseTrust(tf)
	if err != nil {
		log.Fatal(err)
	}
	return conn, trust, func() { conn.Close(); g.Stop(); srv.Close() }
}

// account is what an owner's trusted device holds: the account signing
// key and the latest state (a real device keeps them in its keystore).
type account struct {
	ask   *devices.AccountSigningKey
	state *devices.AccountState
}

// createAccount publishes a new account with one device, as `keyline
// account create USER` does, and returns the directory's answer.
func createAccount(ctx context.Context, conn *client.Client, user, device string) (*account, *client.UpdateResult) {
	secret, err := devices.NewRecoverySecret(rand.Reader) // the paper key
	if err != nil {
		log.Fatal(err)
	}
	rk := devices.DeriveRootKey(secret)
	now := time.Now()
	ask, err := devices.NewAccountSigningKey(rk, user, 1, rand.Reader, now)
	if err != nil {
		log.Fatal(err)
	}
	cert := newDevice(device, rk.Public(), now)
	st, err := devices.NewAccount(ask, rk.Public(), user, cert, now)
	if err != nil {
		log.Fatal(err)
	}
	return &account{ask, st}, publish(ctx, conn, st)
}

func newDevice(name string, rkPub [32]byte, now time.Time) *devices.DeviceCert {
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := dk.NewCert(name, rkPub, now)
	if err != nil {
		log.Fatal(err)
	}
	return cert
}

func publish(ctx context.Context, conn *client.Client, st *devices.AccountState) *client.UpdateResult {
	b, err := st.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	res, err := conn.Update(ctx, b)
	if err != nil {
		log.Fatal(err)
	}
	return res
}

// Look up a contact and verify the answer: checkpoint signature and
// consistency, VRF, map and log proofs, and the account's signatures. The
// first lookup pins the contact's root key unverified (trust on first use);
// later lookups compare with the pin.
func Example_lookup() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keyline-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	conn, trust, stop := exampleDirectory(dir)
	defer stop()
	createAccount(ctx, conn, "bob", "phone")

	// Alice's client: the directory's trust configuration and her state file
	// (last verified checkpoint, pins).
	alice := verifier.NewClient(trust, filepath.Join(dir, "alice-state.json"), conn)
	res, err := alice.Lookup(ctx, "bob")
	if err != nil {
		log.Fatal(err) // a failed check: never use the answer
	}
	fmt.Println("found:", res.Found, "version:", res.Version, "device:", res.State.Devices[0].Name)
	fmt.Println("pin:", res.Pin)

	res, err = alice.Lookup(ctx, "bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pin:", res.Pin)

	// An account that does not exist is proven absent, not an error.
	res, err = alice.Lookup(ctx, "carol")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("carol found:", res.Found)
	// Output:
	// found: true version: 1 device: phone
	// pin: new (unverified, trust on first use)
	// pin: matches unverified pin
	// carol found: false
}

// Monitor one's own account: after publishing, record the version and entry
// the directory acknowledged (SetOwn); every Check then verifies that the
// directory still serves exactly that, and reports any other version as an
// alert, here one signed by a device holding the account signing key that
// the owner did not make.
func Example_monitor() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keyline-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	conn, trust, stop := exampleDirectory(dir)
	defer stop()

	acct, res := createAccount(ctx, conn, "alice", "laptop")
	alice := verifier.NewClient(trust, filepath.Join(dir, "alice-state.json"), conn)
	if err := alice.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 1, EntryHash: klog.EntryHash(res.Leaf)}); err != nil {
		log.Fatal(err)
	}
	mon := verifier.NewMonitor(alice)
	rep, err := mon.Check(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ok:", rep.OK, "alerts:", len(rep.Alerts))

	// A stolen trusted device adds a device of the thief's.
	next, err := devices.AddDevice(acct.state, acct.ask, newDevice("intruder", acct.state.IdentityKey, time.Now()), time.Now())
	if err != nil {
		log.Fatal(err)
	}
	publish(ctx, conn, next)

	rep, err = mon.Check(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("ok:", rep.OK)
	for _, a := range rep.Alerts {
		fmt.Println("alert:", a.Kind)
	}
	// Output:
	// ok: true alerts: 0
	// ok: false
	// alert: unexpected update
}

package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/adversary"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
)

// demoOutput is `demo attack --json`.
type demoOutput struct {
	Dir       string       `json:"dir"`
	Attacks   []demoAttack `json:"attacks"`
	AllCaught bool         `json:"all_caught"`
}

type demoAttack struct {
	Attack      string          `json:"attack"`
	Description string          `json:"description"`
	Detections  []demoDetection `json:"detections"`
	Caught      bool            `json:"caught"`
}

// demoDetection is what one party (a contact's client, the owner's
// monitor, an auditor) saw of an attack.
type demoDetection struct {
	By           string  `json:"by"` // client, monitor, auditor
	Caught       bool    `json:"caught"`
	What         string  `json:"what"`
	EvidencePath *string `json:"evidence_path"`
}

func (a *app) demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch Keyline catch a lying directory (runs entirely in this process)",
	}
	var dir string
	attack := &cobra.Command{
		Use:   "attack",
		Short: "Play key substitution, split view and a silent reset against real clients, a monitor and an auditor",
		Long: `Start an honest directory in this process and a malicious one that holds all
of its private keys (log signing key, VRF key, reset key). alice and bob
have accounts; bob has verified alice's safety number; alice's device runs
the owner monitor; an auditor replays the log. Then the malicious directory
tries, one after the other:

  key substitution  add a device it controls to alice's account
  split view        show bob a different history than everyone else
  silent reset      replace alice's identity key without a reset entry

For each attack the demo prints, in plain words, what bob's client, alice's
monitor and the auditor caught, and where the evidence files are (the
auditor's evidence can be checked by anyone with
` + "`keyline audit verify-evidence --trust DIR/trust.json FILE`" + `). Nothing
leaves this process; the files are kept in --dir. Exit code 0 when every
attack was caught, 3 otherwise.`,
		Example: `  keyline demo attack
  keyline demo attack --dir /tmp/keyline-demo --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				d, err := os.MkdirTemp("", "keyline-demo-")
				if err != nil {
					return failf("pass --dir", err, "cannot create a directory for the demo")
				}
				dir = d
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				return failf("check --dir", err, "cannot create the demo directory")
			}
			abs, _ := filepath.Abs(dir)
			out, err := a.runDemo(cmd.Context(), abs)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := writeJSON(a.out, out); err != nil {
					return err
				}
			} else {
				a.printDemoSummary(out)
			}
			if !out.AllCaught {
				return verificationErr("an attack was NOT caught", "this is a bug in Keyline: keep "+abs+" and report it", nil)
			}
			return nil
		},
	}
	attack.Flags().StringVar(&dir, "dir", "", "directory for the demo's files and evidence (default: a new temporary directory, kept)")
	cmd.AddCommand(attack)
	return cmd
}

// demoWorld is the demo's cast.
type demoWorld struct {
	a       *app
	ctx     context.Context
	dir     string
	cfg     directory.Config
	srv     *directory.Server
	keys    *adversary.Keys
	trust   *verifier.Trust
	evil    *adversary.Source // what every party talks to
	alice   *demoUser
	bob     *demoUser
	nclient int
}

type demoUser struct {
	uid   string
	ik    *devices.AccountSigningKey // the account signing key (the demo keeps it)
	state *devices.AccountState
	leaf  []byte
}

func (a *app) runDemo(ctx context.Context, dir string) (*demoOutput, error) {
	w := &demoWorld{a: a, ctx: ctx, dir: dir}
	w.cfg = directory.Config{DataDir: filepath.Join(dir, "honest-directory"), EpochInterval: 10 * time.Millisecond,
		EmptyEpochInterval: time.Hour, MaxCheckpointAge: "2h", NoSync: true}
	if _, err := os.Stat(w.cfg.DataDir); err == nil {
		return nil, usageErr("--dir %s already holds a demo; use an empty --dir", dir)
	}
	var err error
	if w.srv, err = directory.Open(w.cfg); err != nil {
		return nil, failf("", err, "starting the honest directory")
	}
	defer w.srv.Close()
	if w.trust, err = w.srv.Trust().Trust(); err != nil {
		return nil, failf("", err, "reading the trust configuration")
	}
	tb, _ := json.MarshalIndent(w.srv.Trust(), "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "trust.json"), append(tb, '\n'), 0o644); err != nil {
		return nil, failf("", err, "writing trust.json")
	}
	if w.keys, err = adversary.LoadKeys(w.cfg.DataDir); err != nil {
		return nil, failf("", err, "loading the directory's keys for the attacker")
	}
	w.evil = adversary.NewSource(w.srv.Source())
	say := func(format string, args ...any) {
		if !a.jsonOut {
			fmt.Fprintf(a.out, format, args...)
		}
	}
	say("Keyline attack demo. Everything runs in this process; files are in %s.\n", dir)
	say("An honest directory is running, and a malicious one that holds ALL its private keys\n(log signing key, VRF key, reset key). alice and bob create accounts; bob verifies alice's\nsafety number; alice's device runs the owner monitor; an auditor replays the log.\n\n")
	if w.alice, err = w.newUser("alice"); err != nil {
		return nil, err
	}
	if w.bob, err = w.newUser("bob"); err != nil {
		return nil, err
	}
	out := &demoOutput{Dir: dir, AllCaught: true}
	for i, play := range []func() (demoAttack, error){w.keySubstitution, w.splitView, w.silentReset} {
		at, err := play()
		w.evil.SetMode(adversary.Honest)
		if err != nil {
			return nil, err
		}
		at.Caught = true
		for _, d := range at.Detections {
			at.Caught = at.Caught && d.Caught
		}
		out.AllCaught = out.AllCaught && at.Caught
		out.Attacks = append(out.Attacks, at)
		if !a.jsonOut {
			a.printDemoAttack(i+1, at)
		}
	}
	return out, nil
}

// newUser creates and publishes an account with one device on the honest
// directory.
func (w *demoWorld) newUser(uid string) (*demoUser, error) {
	ik, st, err := demoAccount(uid, "phone", time.Now())
	if err != nil {
		return nil, failf("", err, "building %s's account", uid)
	}
	u := &demoUser{uid: uid, ik: ik}
	return u, w.publish(u, st)
}

func (w *demoWorld) publish(u *demoUser, st *devices.AccountState) error {
	enc, err := st.MarshalBinary()
	if err != nil {
		return failf("", err, "encoding %s's state", u.uid)
	}
	r, err := w.srv.Update(w.ctx, enc)
	if err != nil {
		return failf("", err, "publishing %s's state", u.uid)
	}
	u.state, u.leaf = st, r.Leaf
	return nil
}

// demoAccount builds a signed first state of uid under a new root key,
// and returns it with its account signing key.
func demoAccount(uid, device string, now time.Time) (*devices.AccountSigningKey, *devices.AccountState, error) {
	var secret devices.RecoverySecret
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, nil, err
	}
	rk := devices.DeriveRootKey(secret)
	defer rk.Wipe()
	ask, err := devices.NewAccountSigningKey(rk, uid, 1, rand.Reader, now)
	if err != nil {
		return nil, nil, err
	}
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	c, err := dk.NewCert(device, rk.Public(), now)
	if err != nil {
		return nil, nil, err
	}
	st, err := devices.NewAccount(ask, rk.Public(), uid, c, now)
	return ask, st, err
}

// client returns a fresh client (its own state file) talking to the
// malicious directory, which is honest until an attack starts.
func (w *demoWorld) client(who string) *verifier.Client {
	w.nclient++
	return verifier.NewClient(w.trust, filepath.Join(w.dir, fmt.Sprintf("client-%02d-%s.json", w.nclient, who)), w.evil)
}

// cast is the parties watching one attack, each in the state an honest
// directory left them: bob has verified alice; alice's device expects her
// latest version; the auditor has replayed the honest log.
type cast struct {
	bob     *verifier.Client
	monitor *verifier.Monitor
	audit   *auditor.Auditor
}

func (w *demoWorld) cast(name string) (*cast, error) {
	bob := w.client("bob")
	r, err := bob.Lookup(w.ctx, "alice")
	if err != nil {
		return nil, failf("", err, "bob's honest lookup of alice")
	}
	if err := bob.Pin("alice", r.IdentityKey, true); err != nil {
		return nil, failf("", err, "pinning alice")
	}
	own := w.client("alice")
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: w.alice.state.Version, EntryHash: klog.EntryHash(w.alice.leaf)}); err != nil {
		return nil, failf("", err, "setting up alice's monitor")
	}
	m := verifier.NewMonitor(own)
	if rep, err := m.Check(w.ctx); err != nil || !rep.OK {
		return nil, failf("", err, "alice's monitor rejects the honest directory")
	}
	au, err := auditor.Open(filepath.Join(w.dir, "auditor-"+name), w.trust, w.evil, &auditor.Options{NoSync: true})
	if err != nil {
		return nil, failf("", err, "opening the auditor")
	}
	if _, err := au.Run(w.ctx, nil); err != nil {
		au.Close()
		return nil, failf("", err, "the auditor rejects the honest directory")
	}
	return &cast{bob: bob, monitor: m, audit: au}, nil
}

// watch lets every party look at the directory as it is now.
func (w *demoWorld) watch(c *cast, name string) []demoDetection {
	var ds []demoDetection
	_, err := c.bob.Lookup(w.ctx, "alice")
	d := demoDetection{By: "client", Caught: err != nil}
	var sv *verifier.SplitViewError
	var snc *verifier.SafetyNumberChangedError
	switch {
	case errors.As(err, &sv):
		path := filepath.Join(w.dir, name+"-client-evidence.txt")
		ev := fmt.Sprintf("Two checkpoints of size %d, both signed by the directory's log key, with different roots:\n\n%s\n%s", sv.Size, sv.Old, sv.New)
		if werr := os.WriteFile(path, []byte(ev), 0o644); werr == nil {
			d.EvidencePath = &path
		}
		d.What = fmt.Sprintf("bob's client refused: the directory signed two different logs of size %d (split view); both signed checkpoints are the evidence", sv.Size)
	case errors.As(err, &snc):
		d.What = "bob's client refused: SAFETY NUMBER CHANGED for alice and no directory reset explains it; bob is warned and alice's new key is not used"
	case errors.Is(err, verifier.ErrAccountState):
		d.What = "bob's client refused alice's keys: the new version of her account is not validly signed by alice, so no device of hers made it (" + err.Error() + ")"
	case err != nil:
		d.What = "bob's client refused alice's keys: " + err.Error()
	default:
		d.What = "bob's client accepted the directory's answer"
	}
	ds = append(ds, d)

	rep, err := c.monitor.Check(w.ctx)
	d = demoDetection{By: "monitor", Caught: err != nil || (rep != nil && !rep.OK)}
	switch {
	case err != nil:
		d.What = "alice's monitor raised the alarm: the directory serves her account differently from what her device published (" + err.Error() + ")"
	case rep != nil && !rep.OK:
		var kinds []string
		for _, al := range rep.Alerts {
			kinds = append(kinds, al.Message)
		}
		d.What = "alice's monitor raised the alarm: the directory serves a version of her account she did not publish (" + strings.Join(kinds, "; ") + ")"
	default:
		d.What = "alice's monitor saw nothing unexpected"
	}
	ds = append(ds, d)

	_, err = c.audit.Run(w.ctx, nil)
	d = demoDetection{By: "auditor"}
	var v *auditor.Violation
	switch {
	case errors.As(err, &v):
		d.Caught = true
		d.What = fmt.Sprintf("the auditor found that the log breaks the rule %q at entry %d, with evidence signed by the directory itself (%s)", string(v.Rule), v.LogIndex, v.Detail)
		if v.EvidencePath != "" {
			p := v.EvidencePath
			d.EvidencePath = &p
		}
	case err != nil:
		d.Caught = true
		d.What = "the auditor refused the log: " + err.Error()
	default:
		d.What = "the auditor found no violation"
	}
	return append(ds, d)
}

// forgeAlice serves a forged history: the honest log with alice's next
// version replaced by st (the directory cannot sign as alice, so st is
// whatever it can make).
func (w *demoWorld) forgeAlice(name string, st *devices.AccountState) (*adversary.Forgery, error) {
	cp, err := w.srv.Checkpoint(w.ctx)
	if err != nil {
		return nil, failf("", err, "reading the checkpoint")
	}
	c, _, err := klog.OpenCheckpoint(cp, w.keys.LogVerifier, w.keys.Origin)
	if err != nil {
		return nil, failf("", err, "opening the checkpoint")
	}
	fdir := filepath.Join(w.dir, "forgery-"+name)
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		return nil, failf("", err, "creating %s", fdir)
	}
	f, err := adversary.NewForgery(w.ctx, w.keys, fdir, w.srv.Source(), c.Size)
	if err != nil {
		return nil, failf("", err, "forging a history")
	}
	idx, _, err := f.Index("alice")
	if err != nil {
		return nil, failf("", err, "computing alice's index")
	}
	payload, err := st.MarshalBinary()
	if err != nil {
		return nil, failf("", err, "encoding the forged state")
	}
	leaf, err := (&klog.AccountUpdate{Index: idx, Version: st.Version, PrevHash: klog.EntryHash(w.alice.leaf), Update: klog.UpdateUpdate, Payload: payload}).Marshal()
	if err != nil {
		return nil, failf("", err, "encoding the forged entry")
	}
	if _, err := f.AppendUpdate(w.ctx, leaf, true); err != nil {
		return nil, failf("", err, "appending the forged entry")
	}
	if _, err := f.CloseEpoch(w.ctx, adversary.EpochOptions{}); err != nil {
		return nil, failf("", err, "signing the forged epoch")
	}
	w.evil.ServeOther(f)
	return f, nil
}

func (w *demoWorld) keySubstitution() (demoAttack, error) {
	at := demoAttack{Attack: "key_substitution", Description: "the directory adds a device it controls to alice's account, so that everything sent to alice is also encrypted to the attacker"}
	c, err := w.cast("key-substitution")
	if err != nil {
		return at, err
	}
	defer c.audit.Close()
	// The attacker's device: issued by the attacker's own key, back-signed
	// for alice's identity key. The directory cannot sign as alice, so the
	// state keeps alice's old signature.
	evilIK, evilState, err := demoAccount("alice", "laptop", w.alice.state.Timestamp)
	if err != nil {
		return at, failf("", err, "building the attacker's device")
	}
	_ = evilIK
	evilCert := evilState.Devices[0]
	st := *w.alice.state
	prev, _ := w.alice.state.Hash()
	st.Version, st.PrevHash, st.Timestamp = w.alice.state.Version+1, prev, w.alice.state.Timestamp.Add(time.Second)
	st.Devices = append(slices.Clone(w.alice.state.Devices), evilCert)
	slices.SortFunc(st.Devices, func(x, y *devices.DeviceCert) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	f, err := w.forgeAlice("key-substitution", &st)
	if err != nil {
		return at, err
	}
	defer f.Close()
	at.Detections = w.watch(c, "key-substitution")
	return at, nil
}

func (w *demoWorld) splitView() (demoAttack, error) {
	at := demoAttack{Attack: "split_view", Description: "the directory runs a second copy of itself with the same keys and shows bob a history in which carol's keys are the attacker's, while everyone else sees the real carol"}
	// The fork starts from the honest data dir as it is now.
	forkCfg := w.cfg
	fork, err := adversary.Fork(w.cfg.DataDir, filepath.Join(w.dir, "forked-directory"), forkCfg)
	if err != nil {
		return at, failf("", err, "forking the directory")
	}
	defer fork.Close()
	carol := &demoUser{uid: "carol"}
	_, st, err := demoAccount("carol", "phone", time.Now())
	if err != nil {
		return at, failf("", err, "building carol's account")
	}
	if err := w.publish(carol, st); err != nil {
		return at, err
	}
	_, fake, err := demoAccount("carol", "phone", time.Now())
	if err != nil {
		return at, failf("", err, "building the fake carol")
	}
	enc, _ := fake.MarshalBinary()
	if _, err := fork.Update(w.ctx, enc); err != nil {
		return at, failf("", err, "publishing the fake carol in the fork")
	}
	c, err := w.cast("split-view")
	if err != nil {
		return at, err
	}
	defer c.audit.Close()
	w.evil.ServeOther(fork.Source())
	at.Detections = w.watch(c, "split-view")
	return at, nil
}

func (w *demoWorld) silentReset() (demoAttack, error) {
	at := demoAttack{Attack: "silent_reset", Description: "the directory replaces alice's identity key with one it holds, as an ordinary update instead of a (loud, reset-key-signed) reset, hoping her contacts re-pin it quietly"}
	c, err := w.cast("silent-reset")
	if err != nil {
		return at, err
	}
	defer c.audit.Close()
	evilIK, st, err := demoAccount("alice", "new-phone", w.alice.state.Timestamp.Add(time.Second))
	if err != nil {
		return at, failf("", err, "building the attacker's identity")
	}
	prev, _ := w.alice.state.Hash()
	st.Version, st.PrevHash = w.alice.state.Version+1, prev
	if err := st.Sign(evilIK); err != nil {
		return at, failf("", err, "signing the forged state")
	}
	f, err := w.forgeAlice("silent-reset", st)
	if err != nil {
		return at, err
	}
	defer f.Close()
	at.Detections = w.watch(c, "silent-reset")
	return at, nil
}

var demoParty = map[string]string{"client": "bob's client", "monitor": "alice's monitor", "auditor": "the auditor"}

func (a *app) printDemoAttack(n int, at demoAttack) {
	w := a.out
	fmt.Fprintf(w, "%d. %s: %s.\n", n, strings.ReplaceAll(at.Attack, "_", " "), at.Description)
	for _, d := range at.Detections {
		mark := "CAUGHT"
		if !d.Caught {
			mark = "missed"
		}
		fmt.Fprintf(w, "   %-16s %-6s  %s\n", demoParty[d.By], mark, d.What)
		if d.EvidencePath != nil {
			fmt.Fprintf(w, "   %-16s %-6s  evidence: %s\n", "", "", *d.EvidencePath)
		}
	}
	fmt.Fprintln(w)
}

func (a *app) printDemoSummary(out *demoOutput) {
	caught := 0
	for _, at := range out.Attacks {
		if at.Caught {
			caught++
		}
	}
	fmt.Fprintf(a.out, "%d of %d attacks were caught by every party.\n", caught, len(out.Attacks))
	fmt.Fprintf(a.out, "Anyone can check the auditor's evidence offline:\n  keyline audit verify-evidence --trust %s FILE\n", filepath.Join(out.Dir, "trust.json"))
}

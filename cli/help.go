package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// commandHelp adds to every command the examples (and, where the command
// itself has only a one-line description, a longer one) shown by --help.
// Keyed by the command path without "keyline ". A command missing here
// fails TestEveryCommandHasHelpExample.
var commandHelp = map[string]struct{ example, long string }{
	"": {example: `  keyline serve                               # run a directory (prints where trust.json is)
  keyline account create alice --name laptop  # create your account
  keyline lookup bob                          # look someone up, every proof verified
  keyline demo attack                         # watch a lying directory get caught`},
	"serve": {example: `  keyline serve --data-dir /var/lib/keyline --listen 0.0.0.0:7411 --tls-cert cert.pem --tls-key key.pem
  keyline serve --witness http://127.0.0.1:7412=witness.example.org+1234abcd+AbC... --witness-quorum 1`},
	"account": {example: `  keyline account create alice --name laptop
  keyline account recover alice --paper-key-file words.txt
  keyline account rotate-key --revoke laptop --paper-key-file words.txt   # cut off a stolen device
  keyline account cancel-reset
  keyline account sync`},
	"account rotate-key": {example: `  keyline account rotate-key --revoke laptop --reason compromised   # type the 24 words
  keyline account rotate-key --paper-key-file words.txt --yes       # new signing key, keep every device`},
	"account cancel-reset": {example: `  keyline account cancel-reset          # on a trusted device, while "RESET PENDING" is shown`},
	"account create": {example: `  keyline account create alice --name laptop
  KEYLINE_PASSPHRASE=... keyline --json account create alice --no-confirm   # scripts: the paper key is in the JSON`},
	"account recover": {example: `  keyline --data-dir ~/.keyline-new account recover alice            # type the 24 words
  keyline --data-dir ~/.keyline-new account recover alice --paper-key-file words.txt`},
	"account sync": {},
	"export-tiles": {example: `  keyline export-tiles /srv/www/keyline-log                          # from the directory (--server)
  keyline export-tiles /srv/www/keyline-log --tiles https://log.example.org/   # from another mirror`},
	"device": {example: `  keyline --data-dir ~/.keyline-phone device request alice --name phone   # on the new device
  keyline device approve --trusted KL2-ABCDE-...                        # on a trusted device
  keyline --data-dir ~/.keyline-phone device finish --signing-key KLH1-...   # back on the new device
  keyline device list
  keyline device revoke phone --reason lost`},
	"device request": {example: `  keyline --data-dir ~/.keyline-phone device request alice --name phone
  keyline --data-dir ~/.keyline-phone device request alice --name phone --wait 5m   # wait for the approval
  keyline --data-dir ~/.keyline-phone device request alice    # again: shows the same pending request`},
	"device approve": {example: `  keyline device approve KL2-ABCDE-FGHIJ-...           # asks you to compare the fingerprint
  keyline device approve KL2-ABCDE-FGHIJ-... --trusted # and hand it the account signing key
  keyline device approve KL2-ABCDE-FGHIJ-... --fingerprint "1234 5678 9012 3456 7890"   # scripts`},
	"device trust": {example: `  keyline device trust phone        # prints a code for: keyline device finish --signing-key CODE`},
	"device finish": {example: `  keyline --data-dir ~/.keyline-phone device finish
  keyline --data-dir ~/.keyline-phone device finish --signing-key KLH1-ABCDE-...   # approved with --trusted`,
		long: `Run this on the new device after ` + "`keyline device approve`" + ` on another device.
It looks up the account (every proof verified) and checks that the directory
now lists this device with exactly the keys this device created. Then it
stores the account in the keystore and pins the account's identity key as
verified; the device can be used from then on. Before the approval it says
the device is not part of the account yet (exit 1) and changes nothing.`},
	"device list": {example: `  keyline device list
  keyline --json device list`,
		long: `List the devices of your account as the directory serves them, verified
like a lookup: every current device (id, name, creation time; * marks this
device) and every revoked one (when, why). It reads only public data: no
passphrase is needed.`},
	"device revoke": {example: `  keyline device revoke phone --reason lost
  keyline device revoke 3fa9c2 --yes          # by a unique id prefix`},
	"lookup": {example: `  keyline lookup bob
  keyline --json lookup bob | jq '.checks[] | select(.ok)'`},
	"safety-number": {example: `  keyline safety-number bob
  keyline safety-number bob --no-qr`},
	"verify": {example: `  keyline verify bob 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890
  keyline verify bob --scan keyline-safety:...`},
	"monitor": {example: `  keyline monitor --interval 5m
  keyline monitor --once            # from cron; exit 3 on an unexpected change
  keyline monitor --once --accept   # acknowledge a change you made on another device`},
	"audit": {example: `  keyline audit
  keyline audit --follow --interval 1m`},
	"audit verify-evidence": {example: `  keyline audit verify-evidence ~/.keyline/audit/evidence-split-view-0.json
  keyline audit verify-evidence --trust other-directory-trust.json evidence.json`,
		long: `Check, offline, an evidence file written by an auditor (or by ` + "`keyline demo attack`" + `)
against the trust file of the directory it accuses. Valid evidence is made of
data the directory itself signed (checkpoints, log entries with their
proofs), so anyone can check it without trusting the auditor. Prints the rule
broken and where; exit 3 if the evidence does not prove a violation.`},
	"witness": {example: `  keyline witness keygen witness.example.org
  keyline witness --listen 127.0.0.1:7412`},
	"witness keygen": {example: `  keyline witness keygen witness.example.org`,
		long: `Create the signing key of a witness named NAME (a host name you control) in
<data-dir>/witness.skey (or --key-file) and print its vkey. Give the vkey and
the witness' URL to the directory operator, who adds
` + "`--witness URL=VKEY`" + ` to ` + "`keyline serve`" + `; clients then get the
new trust.json.`},
	"bench": {example: `  keyline bench --accounts 1000 --concurrency 8 --duration 10s
  keyline --json bench --accounts 100 --verify`},
	"state": {example: `  keyline state restore
  keyline state reset --yes`},
	"state restore": {long: `Bring back client-state.json.bak, the last good generation of the client
state (the last checkpoint this client verified and the identity keys it
pinned). Every command that uses the client state backs it up there first.
The state it replaces, if any, is kept next to it.`},
	"state reset": {},
	"demo":        {example: `  keyline demo attack`},
	"demo attack": {},
}

// applyHelp fills in Example and Long from commandHelp, keeping what a
// command sets itself.
func applyHelp(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), root.Name()), " ")
		if h, ok := commandHelp[path]; ok {
			if c.Example == "" {
				c.Example = h.example
			}
			if c.Long == "" && h.long != "" {
				c.Long = h.long
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

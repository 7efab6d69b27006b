// Package cli implements the keyline command line: the directory server
// (serve), the client (account, device, lookup, verify, safety-number), the
// owner's monitor, the auditor and the witness. docs/cli.md documents every
// command; cmd/keyline is a thin main around Main.
//
// Invariants every command keeps:
//
//   - Run returns an exit code and never calls os.Exit. The codes are the
//     six of docs/cli.md: 0 ok, 1 other error, 2 usage, 3 verification
//     failed (a proof, a signature, a pin, a monitor or audit finding), 4
//     network, 5 rejected by the directory. A failed command returns an
//     *Error (code, kind, message, hint); --json prints it in the schema of
//     docs/cli-output.schema.json, as every successful command's output.
//   - Nothing the directory says is used before package verifier checked
//     it: every lookup is fully verified, and only a verified lookup changes
//     the client state file (checkpoint, pins).
//   - A command that changes the own account opens it with one helper
//     (openOwn): lock the client folder, decrypt the keystore, connect,
//     finish or clear an update left pending by an interrupted command, and
//     look the account up, verified. Its change is published with the
//     pending protocol (publishPending): the pending record, then the
//     keystore if the keys changed, are written and fsynced before the
//     update is sent, so no acknowledged update lacks its keys and an
//     interrupted command is finished by `keyline account sync`.
//   - Secrets never reach stdout, logs or the network: the paper key is
//     shown once at creation (or in --json output the caller asked for),
//     the root key exists only in memory while the paper key is typed, and
//     passphrases come from a terminal, KEYLINE_PASSPHRASE or
//     --passphrase-file. Keystores are written atomically with mode 0600.
//   - Without a terminal a command never blocks on a question: it fails
//     with a usage error naming the flag that answers it (--yes,
//     --fingerprint, --no-confirm).
//
// The scenarios under testdata/script (go-internal testscript, one
// behaviour per file) and testdata/quickstart (README.md's quickstart,
// checked line by line against the README) run the real binary.
package cli

// Package trillianit holds the integration tests of a whole Keyline
// directory on a real Trillian (trillian_log_server, trillian_log_signer,
// MariaDB): the CLI story against `keyline serve --log-backend trillian`,
// the fault regressions of issue 15 (serve killed while the signer is down
// with an append in flight; MariaDB killed and restarted under load; the
// signer killed under load) and the lookup benchmark comparing the embedded
// and Trillian backends in the same run.
//
// The tests skip unless KEYLINE_TRILLIAN_ADDR is set;
// scripts/integration-trillian.sh starts the servers, sets it (and
// KEYLINE_BIN, KEYLINE_TRILLIAN_CTL, KEYLINE_TRILLIAN_STATE, which the fault
// tests use to kill and restart MariaDB and the signer) and runs them.
package trillianit

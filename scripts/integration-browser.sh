#!/usr/bin/env bash
# Integration test of the in-browser verifier: builds the WebAssembly
# verifier (scripts/build-wasm.sh, inside the test) and drives the /verify
# page of `keyline serve --http` in a real headless Chromium with chromedp
# (directory/httpapi TestBrowser): an honest lookup verifies and shows the
# safety number and QR code, a contact at v3 is accepted only after the page
# verified his history from the version it last verified (v1), a verified
# contact whose key the directory resets turns the page red, and a bundle
# tampered by a test server, or a history a test server does not serve, is
# shown as failed. The servers listen on loopback with free ports and stop with
# the test.
#
# Installs Debian's chromium with apt-get only if no chromium is on PATH.
# KEYLINE_BROWSER_INTEGRATION=skip skips it (and says so);
# KEYLINE_SCREENSHOT_DIR=DIR keeps the screenshots.
# apt-packages: chromium
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if [ "${KEYLINE_BROWSER_INTEGRATION:-}" = "skip" ]; then
	echo "!! browser integration test SKIPPED (KEYLINE_BROWSER_INTEGRATION=skip)"
	exit 0
fi

chrome=""
for c in chromium chromium-browser google-chrome; do
	if command -v "$c" >/dev/null 2>&1; then chrome=$(command -v "$c"); break; fi
done
if [ -z "$chrome" ]; then
	echo "[browser-it] installing chromium (apt-get)"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium >/dev/null
	chrome=$(command -v chromium)
fi
echo "[browser-it] using $("$chrome" --version 2>/dev/null | tail -1)"
KEYLINE_BROWSER_TEST=1 KEYLINE_CHROMIUM="$chrome" go test -race -count=1 -run 'TestBrowser' -v ./directory/httpapi

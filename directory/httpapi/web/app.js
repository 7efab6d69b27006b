// Keyline in-browser verification page. Every lookup is verified by the
// WebAssembly verifier (cmd/keyline-wasm); the server's word never counts.
// The trust configuration and the client state (last verified checkpoint
// and pinned identity keys) live in localStorage.
"use strict";

const KEY_TRUST = "keyline.trust";
const KEY_STATE = "keyline.state";
const $ = (id) => document.getElementById(id);

function setText(el, text) { el.textContent = text; }

function verdict(state, title, detail) {
  const v = $("verdict");
  v.dataset.state = state;
  v.replaceChildren(document.createTextNode(title));
  if (detail) {
    const s = document.createElement("small");
    s.textContent = detail;
    v.appendChild(s);
  }
}

function list(el, items, empty) {
  el.replaceChildren();
  for (const it of items) {
    const li = document.createElement("li");
    li.textContent = it;
    el.appendChild(li);
  }
  if (!items.length && empty) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = empty;
    el.appendChild(li);
  }
}

async function trustText() {
  let t = localStorage.getItem(KEY_TRUST);
  if (!t) {
    const resp = await fetch("/v1/trust");
    if (!resp.ok) throw new Error("cannot fetch the trust configuration: " + resp.status);
    t = await resp.text();
    localStorage.setItem(KEY_TRUST, t);
  }
  return t;
}

function stateText() { return localStorage.getItem(KEY_STATE) || ""; }

function showPins() {
  const items = [];
  const st = stateText();
  if (st) {
    try {
      const s = JSON.parse(st);
      for (const [user, c] of Object.entries(s.contacts || {})) {
        items.push(`${user}: ${c.verified ? "verified" : "not verified"}, pinned ${c.pinned_at}`);
      }
    } catch (e) { items.push("unreadable state: " + e); }
  }
  list($("pins"), items, "none");
}

// fetchBundle fetches the lookup bundle of user; knownSize > 0 is sent as
// known_size (a bundle for the current checkpoint then omits it).
async function fetchBundle(user, knownSize) {
  let url = "/v1/lookup/" + encodeURIComponent(user);
  if (knownSize > 0) url += "?known_size=" + knownSize;
  let resp, body;
  try {
    resp = await fetch(url, { cache: "no-store" });
    body = await resp.text();
  } catch (e) {
    return { failed: { ok: false, user, error: "cannot reach the directory: " + e } };
  }
  if (!resp.ok) {
    let msg = body;
    try { const e = JSON.parse(body).error; msg = `${e.code} ${e.reason}: ${e.message}`; } catch (_) {}
    return { failed: { ok: false, user, error: `the directory refused the lookup (${resp.status}): ${msg}`, refused: true } };
  }
  let held = false;
  try { held = !JSON.parse(body).checkpoint; } catch (_) {}
  return { body, held };
}

// MAX_FETCHES bounds the history resources one verification may ask for.
const MAX_FETCHES = 256;

// verify verifies a fetched lookup bundle of user. When the verifier needs
// the account's history (a version newer than the one last verified, or a
// changed key: the same history checks as the Go client), it names a
// directory path in "need": that is fetched and the verification is run
// again with it. A history that cannot be fetched fails the lookup: the
// directory's error answer is passed to the verifier, which reports it.
async function verify(body, trust, user) {
  const fetched = {};
  for (let i = 0; ; i++) {
    const res = JSON.parse(keyline.verifyLookup(body, trust, stateText(), user, JSON.stringify(fetched)));
    if (!res.need) return res;
    if (i >= MAX_FETCHES || res.need in fetched || !res.need.startsWith("/v1/")) {
      return { ok: false, user, error: `the history check asked for more than ${MAX_FETCHES} resources or for ${res.need} again`, error_kind: "ErrHistory" };
    }
    try {
      const resp = await fetch(res.need, { cache: "no-store" });
      fetched[res.need] = await resp.text();
    } catch (e) {
      return { ok: false, user, error: `cannot fetch ${res.need} to verify the account history: ${e}`, error_kind: "ErrHistory" };
    }
  }
}

// lookup fetches and verifies one user, keeping the new state on success.
// A bundle that omits the checkpoint is verified against the one the state
// holds; if the state holds no epoch record (an older state) or that fails
// (e.g. a directory on another view), the full bundle is fetched and
// verified instead (docs/api.md, "Verifying in the browser").
async function lookup(user, trust) {
  const ks = JSON.parse(keyline.knownSize(trust, stateText()));
  if (!ks.ok) return { ok: false, user, error: ks.error, error_kind: "ErrState" };
  let got = await fetchBundle(user, ks.size);
  if (got.failed) return got.failed;
  let res = null;
  if (!got.held || ks.holds_record) res = await verify(got.body, trust, user);
  if (got.held && (res === null || !res.ok)) {
    got = await fetchBundle(user, 0);
    if (got.failed) return got.failed;
    res = await verify(got.body, trust, user);
    if (!res.ok && res.error_kind === "ErrConsistency" && ks.size > 0) {
      // An epoch was published in between: ask again with the known size,
      // now below the served one, for the consistency proof.
      got = await fetchBundle(user, ks.size);
      if (got.failed) return got.failed;
      res = await verify(got.body, trust, user);
    }
  }
  if (res.ok) localStorage.setItem(KEY_STATE, res.state);
  return res;
}

let current = null; // {user, key} of the contact shown

async function run(ev) {
  ev.preventDefault();
  const me = $("me").value.trim();
  const peer = $("peer").value.trim();
  if (!peer) return;
  $("lookup").disabled = true;
  $("result").hidden = false;
  verdict("pending", "Verifying " + peer + "…");
  try {
    const trust = await trustText();
    let mine = null;
    if (me) {
      mine = await lookup(me, trust);
    }
    const res = await lookup(peer, trust);
    show(res, me, mine);
  } catch (e) {
    verdict("failed", "Verification failed", String(e));
  } finally {
    $("lookup").disabled = false;
    showPins();
  }
}

function show(res, me, mine) {
  current = null;
  $("safety-box").hidden = true;
  $("devices-box").hidden = true;
  list($("checks"), res.checks || []);
  $("checks-box").hidden = !(res.checks && res.checks.length);
  list($("warnings"), res.warnings || []);
  $("warnings-box").hidden = !(res.warnings && res.warnings.length);
  setText($("checkpoint"), res.checkpoint ? `${res.checkpoint.origin}\nsize ${res.checkpoint.size}\nroot ${res.checkpoint.root}\ncosigned by: ${res.checkpoint.cosigners.join(", ") || "nobody"}\nepoch ${res.epoch.epoch} at ${res.epoch.time}` : "");

  if (res.safety_changed) {
    const how = res.ok ? "the key was never verified; it is now pinned as the new key. Compare safety numbers again before trusting it."
              : res.error_kind === "ErrSafetyNumberChanged" ? "you had verified the old key. Do not trust the new one until you compare safety numbers again."
              : "the account's history does not allow this change (" + res.error_kind + "): do not trust the new key. " + res.error;
    verdict("changed", "⚠ SAFETY NUMBER CHANGED for " + res.user, `Pinned key ${res.pinned_key}, now ${res.identity_key}: ${how}`);
  } else if (!res.ok) {
    verdict("failed", "✗ VERIFICATION FAILED for " + res.user + " — do not use this answer", (res.error_kind ? res.error_kind + ": " : "") + res.error);
    return;
  } else if (!res.found) {
    verdict("absent", res.user + " has no account", "The directory proved that no account exists under this name.");
    return;
  } else {
    const pin = { new: "First lookup: the key is now pinned in this browser (not verified yet: compare safety numbers).",
                  match: "Same key as pinned before (not verified yet: compare safety numbers).",
                  match_verified: "Same key as the one you verified." }[res.pin] || "";
    verdict("ok", "✓ Verified: " + res.user + " (version " + res.version + ")", pin);
  }
  if (res.devices) {
    list($("devices"), res.devices.map((d) => `${d.name} (id ${d.id.slice(0, 16)}…, added ${d.created})`));
    $("devices-box").hidden = false;
  }
  if (!res.identity_key) return;
  current = { user: res.user, key: res.identity_key };
  if (mine && mine.ok && mine.found) {
    const sn = JSON.parse(keyline.safetyNumber(mine.user, mine.identity_key, res.user, res.identity_key));
    if (sn.ok) {
      $("digits").replaceChildren(...sn.groups.map((g) => { const s = document.createElement("span"); s.textContent = g; return s; }));
      $("qr").innerHTML = sn.qr_svg; // generated by the verifier from digits only
      $("safety-box").hidden = false;
    }
  } else if (me) {
    const w = $("warnings");
    const li = document.createElement("li");
    li.textContent = "No safety number: your own account " + me + " did not verify (" + (mine && (mine.error || (mine.found ? "" : "no account"))) + ").";
    w.appendChild(li);
    $("warnings-box").hidden = false;
  }
}

function markVerified() {
  if (!current) return;
  const out = JSON.parse(keyline.markVerified(stateText(), current.user, current.key));
  if (!out.ok) { alert(out.error); return; }
  localStorage.setItem(KEY_STATE, out.state);
  verdict("ok", "✓ " + current.user + " marked as verified", "A later change of this key will fail loudly.");
  showPins();
}

window.keylineReady = () => {
  setText($("wasm-status"), "Verifier loaded: lookups are checked here, in your browser.");
  $("lookup").disabled = false;
};

async function start() {
  $("lookup-form").addEventListener("submit", run);
  $("mark-verified").addEventListener("click", markVerified);
  $("save-trust").addEventListener("click", () => { localStorage.setItem(KEY_TRUST, $("trust").value); });
  $("forget").addEventListener("click", () => { localStorage.removeItem(KEY_STATE); showPins(); });
  showPins();
  try {
    $("trust").value = await trustText();
  } catch (e) {
    setText($("wasm-status"), String(e));
  }
  if (typeof Go === "undefined") {
    setText($("wasm-status"), "The WebAssembly verifier is not available on this server (build it with scripts/build-wasm.sh). Nothing can be verified.");
    return;
  }
  try {
    const go = new Go();
    const resp = await fetch("/web/wasm/keyline.wasm");
    if (!resp.ok) throw new Error("keyline.wasm: " + resp.status + " " + (await resp.text()));
    const { instance } = await WebAssembly.instantiate(await resp.arrayBuffer(), go.importObject);
    go.run(instance);
  } catch (e) {
    setText($("wasm-status"), "The verifier did not load: " + e);
  }
}

start();

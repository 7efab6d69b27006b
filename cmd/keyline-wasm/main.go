//go:build js && wasm

// Command keyline-wasm is Keyline's verifier for web pages, built with
// GOOS=js GOARCH=wasm (scripts/build-wasm.sh). Loaded with Go's
// wasm_exec.js, it defines a global object keyline with:
//
//	keyline.verifyLookup(bundleJSON, trustJSON, stateJSON, user, fetchedJSON) -> resultJSON
//	keyline.knownSize(trustJSON, stateJSON) -> {"ok", "size", "holds_record", "error"}
//	keyline.safetyNumber(localUser, localKeyHex, remoteUser, remoteKeyHex) -> resultJSON
//	keyline.markVerified(stateJSON, user, keyHex) -> {"ok", "state", "error"}
//
// and then calls keylineReady() if the page defined it. Results are the
// JSON encodings of webverify.Result and webverify.SafetyNumber; see
// docs/api.md, "Verifying in the browser". fetchedJSON is a JSON object
// from path to body of the directory resources fetched so far for this
// lookup ("" or "{}" at first): a result with "need" asks for one more
// (webverify.VerifyLookup).
package main

import (
	"encoding/json"
	"syscall/js"
	"time"

	"github.com/keyline/keyline/verifier/webverify"
)

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return `{"ok":false,"error":"encoding the result failed"}`
	}
	return string(b)
}

func str(args []js.Value, i int) string {
	if i >= len(args) || args[i].Type() != js.TypeString {
		return ""
	}
	return args[i].String()
}

func main() {
	api := js.Global().Get("Object").New()
	api.Set("verifyLookup", js.FuncOf(func(_ js.Value, a []js.Value) any {
		var fetched map[string]string
		if f := str(a, 4); f != "" {
			if err := json.Unmarshal([]byte(f), &fetched); err != nil {
				return toJSON(webverify.Result{User: str(a, 3), Error: "fetched is not a JSON object of strings: " + err.Error()})
			}
		}
		return toJSON(webverify.VerifyLookup(str(a, 0), str(a, 1), str(a, 2), str(a, 3), fetched, time.Now()))
	}))
	api.Set("knownSize", js.FuncOf(func(_ js.Value, a []js.Value) any {
		n, held, err := webverify.Known(str(a, 0), str(a, 1))
		if err != nil {
			return toJSON(map[string]any{"ok": false, "error": err.Error()})
		}
		return toJSON(map[string]any{"ok": true, "size": n, "holds_record": held})
	}))
	api.Set("safetyNumber", js.FuncOf(func(_ js.Value, a []js.Value) any {
		return toJSON(webverify.NewSafetyNumber(str(a, 0), str(a, 1), str(a, 2), str(a, 3)))
	}))
	api.Set("markVerified", js.FuncOf(func(_ js.Value, a []js.Value) any {
		st, err := webverify.MarkVerified(str(a, 0), str(a, 1), str(a, 2), time.Now())
		if err != nil {
			return toJSON(map[string]any{"ok": false, "error": err.Error()})
		}
		return toJSON(map[string]any{"ok": true, "state": st})
	}))
	js.Global().Set("keyline", api)
	if ready := js.Global().Get("keylineReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // keep the functions alive
}

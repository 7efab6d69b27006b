package httpapi

//go:generate ../../scripts/build-wasm.sh

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
)

// webFiles holds the verification page and, when scripts/build-wasm.sh
// (go generate) ran before the build, the WebAssembly verifier in
// web/wasm/ (not committed: it is a build product of the verifier code).
//
//go:embed web
var webFiles embed.FS

// wasmFS returns the file system serving keyline.wasm and wasm_exec.js.
func (h *Handler) wasmFS() http.FileSystem {
	if h.opts.Web != nil {
		return h.opts.Web
	}
	sub, _ := fs.Sub(webFiles, "web/wasm")
	return http.FS(sub)
}

// HasVerifier reports whether the WebAssembly verifier is available.
func (h *Handler) HasVerifier() bool {
	f, err := h.wasmFS().Open("keyline.wasm")
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func (h *Handler) webRoutes(m *http.ServeMux) {
	page := func(name, ctype string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, err := webFiles.ReadFile("web/" + name)
			if err != nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "no-cache")
			w.Write(b)
		}
	}
	m.HandleFunc("GET /verify", page("verify.html", "text/html; charset=utf-8"))
	m.HandleFunc("GET /web/app.js", page("app.js", "text/javascript; charset=utf-8"))
	var gz sync.Map // file name -> gzipped bytes
	m.HandleFunc("GET /web/wasm/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		var ctype string
		switch name {
		case "keyline.wasm":
			ctype = "application/wasm"
		case "wasm_exec.js":
			ctype = "text/javascript; charset=utf-8"
		default:
			http.NotFound(w, r)
			return
		}
		f, err := h.wasmFS().Open(name)
		if err != nil {
			http.Error(w, "the WebAssembly verifier is not in this build: run scripts/build-wasm.sh (go generate ./directory/httpapi) and rebuild keyline", http.StatusNotFound)
			return
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			http.Error(w, "reading "+name+" failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Vary", "Accept-Encoding")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Write(b)
			return
		}
		key := name
		z, ok := gz.Load(key)
		if !ok {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			z, _ = gz.LoadOrStore(key, buf.Bytes())
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(z.([]byte))
	})
}

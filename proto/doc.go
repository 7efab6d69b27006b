// Package proto holds Keyline's gRPC API. Messages carry the canonical
// encodings of docs/protocol.md as opaque bytes; protobuf is transport only.
package proto

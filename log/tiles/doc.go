// Package tiles serves and reads a Keyline log as C2SP tlog-tiles
// (https://c2sp.org/tlog-tiles): a checkpoint, Merkle tree tiles and entry
// bundles that are static files, so that auditors, monitors and witnesses
// can fetch the log through a CDN or from an object store.
//
// # Resources
//
// Under a URL prefix a log serves
//
//	<prefix>/checkpoint                   the signed checkpoint (text/plain)
//	<prefix>/tile/<L>/<N>[.p/<W>]         a Merkle tree tile
//	<prefix>/tile/entries/<N>[.p/<W>]     an entry bundle
//
// <L> is the tile level, 0 to 63. <N> is the tile index, written as
// zero-padded 3-digit path elements, all but the last prefixed with "x":
// index 1234067 is "x001/x234/067", index 5 is "005". A full tile (or
// bundle) has 256 hashes (entries) and no suffix; a partial one of width W,
// 1 <= W <= 255, ends in ".p/<W>". See Tile.Path and ParsePath.
//
// A level-0 tile holds the RFC 6962 leaf hashes of leaves [256N, 256N+W).
// A tile at level L >= 1 holds, for i < W, the Merkle tree hash of the leaves
// [(256N+i)*256^L, (256N+i+1)*256^L): each hash is the root of a full tile
// at the level below. A partial tile is never hashed into the level above.
//
// An entry bundle holds the leaves of the level-0 tile with the same N and
// W, each as a big-endian uint16 length followed by the leaf's canonical
// encoding (docs/protocol.md). A leaf over 65535 bytes cannot be bundled:
// MarshalBundle refuses it (ErrLeafTooLarge). See MarshalBundle.
//
// Full tiles and bundles never change and may be cached forever; partial
// ones and the checkpoint change as the log grows.
//
// Hashes keeps the hashes a server needs (every complete tile hash at level
// 1 and above, and the leaf hashes of the last partial level-0 tile) in
// memory: 32 bytes per 256 leaves. Client reads a log from a tiles URL and
// answers Checkpoint, Entries and ConsistencyProof, the log reads an auditor
// needs, verifying every tile it uses against the checkpoint's root.
package tiles

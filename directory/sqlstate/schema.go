package sqlstate

// migrations are the schema versions, applied in order. Each is a list of
// statements run once; schema_migrations records the versions applied. A
// migration is never edited after release: change the schema by appending
// one.
//
// Sharding: every large table is keyed by the VRF index (vrf_index, or the
// tile key whose first byte is the first byte of a VRF index prefix), so a
// range-sharded store (Vitess with a binary range vindex on the key column,
// TiDB regions) spreads them by index prefix, and every query of a lookup
// or an epoch touches one key or one key range per table. The small
// tables (meta, epochs, checkpoints, leases) live on one shard. users is
// keyed by the user id; it only caches VRF proofs (recomputable from the
// VRF key), so it may be sharded by user id or dropped. See
// docs/operations-scaleout.md.
var migrations = [][]string{
	1: {
		// meta holds single values: "applied" (u64 log size the map and
		// index cover), "latest_epoch" (u64), "checkpoint" (latest signed
		// checkpoint note, the log.CheckpointStore).
		`CREATE TABLE IF NOT EXISTS meta (
			name VARCHAR(64) NOT NULL PRIMARY KEY,
			value MEDIUMBLOB NOT NULL
		) ENGINE=InnoDB`,
		// accounts: the latest entry of each VRF index (directory record
		// fields plus the AccountUpdate leaf).
		`CREATE TABLE IF NOT EXISTS accounts (
			vrf_index BINARY(32) NOT NULL PRIMARY KEY,
			version BIGINT UNSIGNED NOT NULL,
			log_index BIGINT UNSIGNED NOT NULL,
			entry_hash BINARY(32) NOT NULL,
			leaf MEDIUMBLOB NOT NULL
		) ENGINE=InnoDB`,
		// history: the log index of every version of every index.
		`CREATE TABLE IF NOT EXISTS history (
			vrf_index BINARY(32) NOT NULL,
			version BIGINT UNSIGNED NOT NULL,
			log_index BIGINT UNSIGNED NOT NULL,
			PRIMARY KEY (vrf_index, version)
		) ENGINE=InnoDB`,
		// users: VRF proof and index of every user id that has an account.
		`CREATE TABLE IF NOT EXISTS users (
			user_id VARBINARY(255) NOT NULL PRIMARY KEY,
			vrf_proof BINARY(80) NOT NULL,
			vrf_index BINARY(32) NOT NULL
		) ENGINE=InnoDB`,
		// map_kv: the verifiable map's storage records: its tiles, keyed
		// by vmap.TileID.Key (index prefix bytes first); the layout is
		// recorded in meta "map_layout".
		`CREATE TABLE IF NOT EXISTS map_kv (
			k VARBINARY(64) NOT NULL PRIMARY KEY,
			v MEDIUMBLOB NOT NULL
		) ENGINE=InnoDB`,
		// epochs: every epoch's map root and log size; checkpoint is the
		// served checkpoint (with cosignatures) of the latest published
		// epoch, NULL for epochs replayed from the log and not (yet)
		// published on their own.
		`CREATE TABLE IF NOT EXISTS epochs (
			epoch BIGINT UNSIGNED NOT NULL PRIMARY KEY,
			map_root BINARY(32) NOT NULL,
			log_size BIGINT UNSIGNED NOT NULL,
			checkpoint BLOB NULL,
			committed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
		) ENGINE=InnoDB`,
		// checkpoints: every checkpoint the log signed, in order.
		`CREATE TABLE IF NOT EXISTS checkpoints (
			seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
			note BLOB NOT NULL,
			token BIGINT UNSIGNED NOT NULL,
			stored_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
		) ENGINE=InnoDB`,
		// update_queue: validated updates waiting for the sequencer.
		// pending_version is the version while queued or done and NULL once
		// failed, so (vrf_index, pending_version) is unique among the
		// updates that are or will be in the log.
		`CREATE TABLE IF NOT EXISTS update_queue (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
			vrf_index BINARY(32) NOT NULL,
			pending_version BIGINT UNSIGNED NULL,
			version BIGINT UNSIGNED NOT NULL,
			prev_hash BINARY(32) NOT NULL,
			entry_hash BINARY(32) NOT NULL,
			user_id VARBINARY(255) NOT NULL,
			vrf_proof VARBINARY(80) NOT NULL,
			leaf MEDIUMBLOB NOT NULL,
			status TINYINT UNSIGNED NOT NULL DEFAULT 0,
			epoch BIGINT UNSIGNED NULL,
			err_code INT NULL,
			err_reason VARCHAR(64) NULL,
			err_msg VARCHAR(512) NULL,
			created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
			updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
			UNIQUE KEY pending (vrf_index, pending_version),
			KEY by_status (status, id)
		) ENGINE=InnoDB`,
		// leases: the sequencer lease. token is the fencing token: it grows
		// by one at every change of holder, and every epoch commit checks
		// it under a row lock.
		`CREATE TABLE IF NOT EXISTS leases (
			name VARCHAR(64) NOT NULL PRIMARY KEY,
			holder VARCHAR(255) NOT NULL,
			token BIGINT UNSIGNED NOT NULL,
			expires_at TIMESTAMP(6) NOT NULL
		) ENGINE=InnoDB`,
	},
}

// SchemaVersion is the schema version this package writes.
var SchemaVersion = len(migrations) - 1

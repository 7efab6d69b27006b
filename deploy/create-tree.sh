#!/bin/sh
# One-shot tree creator for docker-compose.yml: creates Keyline's
# PREORDERED_LOG tree once and records its id in $TREE_ID_FILE; on later runs
# it only prints the recorded id. Retries while trillian_log_server starts.
set -eu
: "${TRILLIAN_ADMIN_ADDR:?}" "${TREE_ID_FILE:?}"
if [ -s "$TREE_ID_FILE" ]; then
	echo "tree already created: $(cat "$TREE_ID_FILE")"
	exit 0
fi
i=0
until id=$(createtree --admin_server="$TRILLIAN_ADMIN_ADDR" --tree_type=PREORDERED_LOG \
	--display_name=keyline --max_root_duration=0); do
	i=$((i + 1))
	[ "$i" -ge 30 ] && { echo "createtree failed 30 times" >&2; exit 1; }
	sleep 2
done
case "$id" in *[!0-9]* | "") echo "createtree printed '$id'" >&2; exit 1 ;; esac
printf '%s\n' "$id" >"$TREE_ID_FILE.tmp"
mv "$TREE_ID_FILE.tmp" "$TREE_ID_FILE"
echo "created tree $id"

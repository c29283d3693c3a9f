#!/usr/bin/env bash
# Whole-server DICOMweb benchmark: Sanping vs Orthanc, side by side on
# loopback, same generated files, same Go client (bench/cmd/dwbench), one run.
#
#   bash bench/run.sh                 # from the repo root; writes bench/results-latest.md
#
# Environment knobs (all optional):
#   SANPING_PORT=18080 ORTHANC_PORT=18042   ports on 127.0.0.1
#   SKIP_SANPING=1 / SKIP_ORTHANC=1         benchmark one server alone
#   OUT=path.md                             report file (default bench/results-latest.md)
#   BENCH_TMP=dir                           where the temp work dir goes (default $TMPDIR or /tmp)
#   KEEP=1                                  keep the work dir (data dirs, logs, generated files)
#   DWBENCH_ARGS="-scenarios stow-small"    extra dwbench flags
#   ORTHANC_EXTRA='"StorageAccessOnFind": "Never",'   extra Orthanc config members
#                                           (each followed by a comma); off by default
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SANPING_PORT=${SANPING_PORT:-18080}
ORTHANC_PORT=${ORTHANC_PORT:-18042}
SKIP_SANPING=${SKIP_SANPING:-0}
SKIP_ORTHANC=${SKIP_ORTHANC:-0}
OUT=${OUT:-$ROOT/bench/results-latest.md}
ORTHANC_BIN=${ORTHANC_BIN:-/usr/sbin/Orthanc}
USER_NAME=bench
# Hex only, so it can go into the JSON config as it is.
PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

log() { printf '%s run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/sanping-bench.XXXXXX")
PIDS=()
SANPING_PID=0
ORTHANC_PID=0
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ]; then
		for f in "$WORK"/orthanc.log "$WORK"/sanping.log; do
			[ -s "$f" ] && { log "last lines of $f:"; tail -n 20 "$f" >&2; }
		done
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Orthanc: packages, plugin, config ---------------------------------------
if [ "$SKIP_ORTHANC" != 1 ]; then
	if [ ! -x "$ORTHANC_BIN" ] || ! dpkg -s orthanc-dicomweb >/dev/null 2>&1; then
		[ "$(id -u)" = 0 ] || die "Orthanc missing: apt-get install -y orthanc orthanc-dicomweb"
		log "installing orthanc and orthanc-dicomweb"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
	fi
	# The Debian package starts its own service (port 8042/4242); stop it so
	# it does not compete for CPU and disk.
	if command -v service >/dev/null && service orthanc status >/dev/null 2>&1; then
		log "stopping the Debian orthanc service"
		service orthanc stop >/dev/null 2>&1 || true
	fi
	PLUGIN=$(dpkg -L orthanc-dicomweb | grep -E '/libOrthancDicomWeb\.so$' | head -n 1 || true)
	[ -n "$PLUGIN" ] && [ -e "$PLUGIN" ] || die "libOrthancDicomWeb.so not found (dpkg -L orthanc-dicomweb)"
	port_busy "$ORTHANC_PORT" && die "127.0.0.1:$ORTHANC_PORT is already in use"

	mkdir -p "$WORK/orthanc-storage"
	cat >"$WORK/orthanc.json" <<EOF
{
  ${ORTHANC_EXTRA:-}
  "Name": "dwbench-orthanc",
  "StorageDirectory": "$WORK/orthanc-storage",
  "IndexDirectory": "$WORK/orthanc-storage",
  "StorageCompression": false,
  "SyncStorageArea": true,
  "HttpServerEnabled": true,
  "HttpPort": $ORTHANC_PORT,
  "DicomServerEnabled": false,
  "DicomPort": 0,
  "RemoteAccessAllowed": true,
  "AuthenticationEnabled": true,
  "RegisteredUsers": { "$USER_NAME": "$PASSWORD" },
  "Plugins": [ "$PLUGIN" ],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
}
EOF
	log "starting Orthanc ($("$ORTHANC_BIN" --version | head -n 1)) on 127.0.0.1:$ORTHANC_PORT"
	"$ORTHANC_BIN" "$WORK/orthanc.json" >"$WORK/orthanc.log" 2>&1 &
	ORTHANC_PID=$!
	PIDS+=("$ORTHANC_PID")
fi

# --- Sanping -----------------------------------------------------------------
if [ "$SKIP_SANPING" != 1 ]; then
	port_busy "$SANPING_PORT" && die "127.0.0.1:$SANPING_PORT is already in use"
	log "building Sanping (go build -o bin/sanping ./cmd/sanping)"
	go build -o bin/sanping ./cmd/sanping
	mkdir -p "$WORK/sanping-data"
	log "starting Sanping on 127.0.0.1:$SANPING_PORT"
	# An admin of the benchmark's own, made with the CLI as a county installer would: the
	# bootstrap admin's password is temporary until changed, which a DICOMweb client cannot do.
	echo "$PASSWORD" | bin/sanping user add -data "$WORK/sanping-data" -roles admin "$USER_NAME" >/dev/null
	bin/sanping -addr "127.0.0.1:$SANPING_PORT" -data "$WORK/sanping-data" -media-udp= -media-tcp= -turn= \
		>"$WORK/sanping.log" 2>&1 &
	SANPING_PID=$!
	PIDS+=("$SANPING_PID")
fi

# --- dwbench -----------------------------------------------------------------
log "building dwbench"
go build -o "$WORK/dwbench" ./bench/cmd/dwbench

SP_URL="http://127.0.0.1:$SANPING_PORT"
OR_URL="http://127.0.0.1:$ORTHANC_PORT"
[ "$SKIP_SANPING" = 1 ] && SP_URL=""
[ "$SKIP_ORTHANC" = 1 ] && OR_URL=""

# dwbench waits (bounded, -wait) for /healthz and Orthanc's /system itself.
# shellcheck disable=SC2086
BENCH_PASSWORD=$PASSWORD "$WORK/dwbench" \
	-sanping "$SP_URL" -orthanc "$OR_URL" -user "$USER_NAME" \
	-sanping-pid "$SANPING_PID" -orthanc-pid "$ORTHANC_PID" \
	-tmp "$WORK/data" -out "$OUT" ${DWBENCH_ARGS:-}
log "report written to $OUT"

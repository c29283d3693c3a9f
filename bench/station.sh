#!/usr/bin/env bash
# Whole-program benchmark of the station program (client/), on loopback, in one run, same
# generated files, a few repetitions; writes a markdown report of medians and ratios.
#
#   (a) ct-upload: a 300-slice CT (300 x 1 MB) sent by `sanping-station upload DIR` (after `sanping-station login`
#       with a station token) vs STOW-RS of the same files into the same server build
#       (bench/cmd/stationbench stow: one instance per request, STOW_WORKERS requests in
#       flight, same token). Every run gets a fresh server data directory.
#   (b) scp-small, scp-ct: DCMTK storescu sends 2000 x 64 KB MR, then 300 x 1 MB CT, in one
#       association each, to `sanping-station scp` and to DCMTK storescp (TCP_NODELAY=1 for DCMTK).
#
#   bash bench/station.sh             # from the repo root; writes bench/results-station.md
#
# Environment knobs (all optional):
#   REPS=5                        repetitions; the order of the two programs alternates
#   CASES=ct-upload,scp-small,scp-ct
#   STOW_WORKERS=8                concurrent STOW-RS requests
#   SMALL_N=2000 SMALL_SIZE=180   small MR instances: count, rows = columns
#   CT_N=300 CT_SIZE=724          CT slices: count, rows = columns
#   HTTP_PORT=18090 SCP_PORT=18104  ports on 127.0.0.1
#   PAUSE=2                       seconds idle after sync before each timed run
#   OUT=path.md                   report (default bench/results-station.md)
#   BENCH_TMP=dir                 where the temp work dir goes (default /tmp)
#   KEEP=1                        keep the work dir (files, logs, binaries)
#   STORESCU_ARGS= STORESCP_ARGS= CLIENT_SCP_ARGS=   extra flags for those programs
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and printf with a decimal point

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

REPS=${REPS:-5}
CASES=${CASES:-ct-upload,scp-small,scp-ct}
STOW_WORKERS=${STOW_WORKERS:-8}
SMALL_N=${SMALL_N:-2000}
SMALL_SIZE=${SMALL_SIZE:-180}
CT_N=${CT_N:-300}
CT_SIZE=${CT_SIZE:-724}
HTTP_PORT=${HTTP_PORT:-18090}
SCP_PORT=${SCP_PORT:-18104}
PAUSE=${PAUSE:-2}
OUT=${OUT:-$ROOT/bench/results-station.md}
STATION_AE=SANPING
STORESCP_AE=STORESCP
URL="http://127.0.0.1:$HTTP_PORT"

log() { printf '%s station.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in go curl awk storescu storescp echoscu; do
	command -v "$tool" >/dev/null || die "$tool not found (DCMTK tools: apt-get install dcmtk)"
done
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 or later is needed (EPOCHREALTIME)"
case ",$CASES," in *,ct-upload,* | *,scp-small,* | *,scp-ct,*) ;; *) die "CASES=$CASES: nothing to run" ;; esac
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy "$HTTP_PORT" && die "127.0.0.1:$HTTP_PORT is already in use"
port_busy "$SCP_PORT" && die "127.0.0.1:$SCP_PORT is already in use"

WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/sanping-station.XXXXXX")
BIN=$WORK/bin
RUNS=$WORK/runs.tsv
CLK_TCK=$(getconf CLK_TCK)
PIDS=() # background processes this script started and has not stopped yet
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ]; then
		for f in "$WORK"/*.log; do
			[ -s "$f" ] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }
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

# start LOG CMD... runs CMD in the background, output to LOG; its pid is in BG.
start() {
	local out=$1
	shift
	"$@" >>"$out" 2>&1 &
	BG=$!
	PIDS+=("$BG")
}

# stop PID: SIGTERM (both servers shut down gracefully on it), then wait.
stop() {
	local pid=$1 p keep=()
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

alive() { kill -0 "$1" 2>/dev/null; }

# cpu PID: user+system CPU seconds of a running process, from /proc/PID/stat.
cpu() {
	awk -v hz="$CLK_TCK" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

# settle: flush dirty pages (the previous run's writes are not paid for by this one), then idle.
settle() {
	sync
	sleep "$PAUSE"
}

load1() { cut -d ' ' -f 1 /proc/loadavg; }

# record CASE TOOL REP ORDER FILES BYTES SECONDS CPU
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$(load1)" >>"$RUNS"
	log "$(printf '%-9s %-13s rep %s: %5d files in %7.2fs = %7.1f files/s, %6.1f MB/s; receiver CPU %.2fs' \
		"$1" "$2" "$3" "$5" "$7" "$(awk -v n="$5" -v s="$7" 'BEGIN { print n / s }')" \
		"$(awk -v b="$6" -v s="$7" 'BEGIN { print b / 1e6 / s }')" "$8")"
}

dir_bytes() { find "$1" -maxdepth 1 -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
count_files() { find "$1" -maxdepth 1 -type f -name "${2:-*}" | wc -l; }

# --- build and generate ------------------------------------------------------
# Rebuilt on every run: client/ and server/ change under this script.
log "building server, client, stationbench and dwbench into $BIN"
mkdir -p "$BIN"
go build -o "$BIN/server" ./cmd/sanping
go build -o "$BIN/client" ./cmd/sanping-station
go build -o "$BIN/stationbench" ./bench/cmd/stationbench
go build -o "$BIN/dwbench" ./bench/cmd/dwbench

FILES=$WORK/files
log "generating $SMALL_N MR ${SMALL_SIZE}x$SMALL_SIZE and $CT_N CT ${CT_SIZE}x$CT_SIZE files"
"$BIN/dwbench" -files-only -tmp "$FILES" -scenarios stow-small,stow-ct \
	-small-n "$SMALL_N" -small-size "$SMALL_SIZE" -ct-n "$CT_N" -ct-rows "$CT_SIZE" -ct-cols "$CT_SIZE" 2>>"$WORK/generate.log"
SMALL_DIR=$FILES/small
CT_DIR=$FILES/ct
SMALL_BYTES=$(dir_bytes "$SMALL_DIR")
CT_BYTES=$(dir_bytes "$CT_DIR")
: >"$RUNS"

# --- (a) sanping-station upload vs STOW-RS ----------------------------------------------
DATA=$WORK/server-data
TOKEN=
SERVER_PID=

# fresh_server: a new data directory with a county hospital, a village clinic under it and a
# station token for the clinic (made by the admin CLI, as an installer would), and a server
# on it, answering /healthz.
fresh_server() {
	rm -rf "$DATA"
	mkdir -p "$DATA"
	"$BIN/server" site add -data "$DATA" -kind hospital BENCHH "基准县人民医院" >>"$WORK/server-cli.log"
	"$BIN/server" site add -data "$DATA" -kind clinic -parent BENCHH BENCH "基准村卫生室" >>"$WORK/server-cli.log"
	TOKEN=$("$BIN/server" token create -data "$DATA" -institution BENCH "基准村卫生室-CT" | tail -n 1)
	case $TOKEN in spt_*) ;; *) die "sanping token create printed no spt_ token" ;; esac
	SANPING_ADMIN_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n') \
		start "$WORK/server.log" "$BIN/server" -addr "127.0.0.1:$HTTP_PORT" -data "$DATA" -media-udp= -media-tcp= -turn=
	SERVER_PID=$BG
	for _ in $(seq 1 240); do
		curl -fsS -o /dev/null --max-time 2 "$URL/healthz" 2>/dev/null && return 0
		alive "$SERVER_PID" || die "the server exited (see server.log)"
		sleep 0.25
	done
	die "the server did not answer $URL/healthz within 60 s"
}

stop_server() {
	stop "$SERVER_PID"
	rm -rf "$DATA"
}

run_upload() { # REP ORDER
	fresh_server
	"$BIN/client" login -server "$URL" -token - -config "$WORK/client.json" <<<"$TOKEN" >>"$WORK/client.log"
	rm -rf "$WORK/journal"
	settle
	local c0 t0 t1 c1
	c0=$(cpu "$SERVER_PID")
	t0=$EPOCHREALTIME
	# -compress=false: on loopback the link costs nothing, and STOW sends the same bytes as they
	# are; the station's JPEG-LS coding is for 4G links and measured by client/upload's
	# BenchmarkCode (UPLOAD_FLAGS= to time it here too).
	# shellcheck disable=SC2086
	"$BIN/client" upload -config "$WORK/client.json" -journal "$WORK/journal" -attempts 3 ${UPLOAD_FLAGS--compress=false} "$CT_DIR" \
		>"$WORK/upload.log" 2>&1 || die "sanping-station upload failed (see upload.log)"
	t1=$EPOCHREALTIME
	c1=$(cpu "$SERVER_PID")
	grep -q "^$CT_N files: $CT_N stored, 0 already stored, 0 conflicts, 0 failed" "$WORK/upload.log" ||
		die "sanping-station upload did not store all $CT_N files: $(tail -n 3 "$WORK/upload.log")"
	record ct-upload client-upload "$1" "$2" "$CT_N" "$CT_BYTES" "$(sub "$t0" "$t1")" "$(sub "$c0" "$c1")"
	stop_server
	rm -rf "$WORK/journal"
}

run_stow() { # REP ORDER
	fresh_server
	settle
	local c0 c1 line
	c0=$(cpu "$SERVER_PID")
	line=$(BENCH_TOKEN=$TOKEN "$BIN/stationbench" stow -url "$URL" -workers "$STOW_WORKERS" "$CT_DIR" 2>>"$WORK/stow.log") ||
		die "STOW-RS failed (see stow.log)"
	c1=$(cpu "$SERVER_PID")
	[[ $line =~ ^files=$CT_N\ bytes=$CT_BYTES\ seconds=([0-9.]+)$ ]] || die "stationbench stow: unexpected output: $line"
	record ct-upload stow "$1" "$2" "$CT_N" "$CT_BYTES" "${BASH_REMATCH[1]}" "$(sub "$c0" "$c1")"
	stop_server
}

# --- (b) storescu into sanping-station scp vs storescp --------------------------------------
SPOOL=$WORK/spool

run_scp() { # CASE TOOL DIR N BYTES REP ORDER
	local kase=$1 tool=$2 dir=$3 n=$4 bytes=$5 ae stored pattern pid c0 t0 t1 c1
	rm -rf "$SPOOL"
	mkdir -p "$SPOOL"
	if [ "$tool" = client-scp ]; then
		ae=$STATION_AE
		# shellcheck disable=SC2086
		start "$WORK/client-scp.log" "$BIN/client" scp -aet "$ae" -addr "127.0.0.1:$SCP_PORT" -dir "$SPOOL" ${CLIENT_SCP_ARGS:-}
		stored=$SPOOL/incoming pattern='*.dcm'
	else
		ae=$STORESCP_AE
		# shellcheck disable=SC2086
		TCP_NODELAY=1 start "$WORK/storescp.log" storescp -aet "$ae" -od "$SPOOL" ${STORESCP_ARGS:-} "$SCP_PORT"
		stored=$SPOOL pattern='*'
	fi
	pid=$BG
	for i in $(seq 1 100); do
		echoscu -aec "$ae" 127.0.0.1 "$SCP_PORT" >/dev/null 2>&1 && break
		alive "$pid" || die "$tool exited (see its log)"
		[ "$i" = 100 ] && die "$tool did not answer C-ECHO within 25 s"
		sleep 0.25
	done
	settle
	c0=$(cpu "$pid")
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2086
	TCP_NODELAY=1 storescu -aec "$ae" +sd ${STORESCU_ARGS:-} 127.0.0.1 "$SCP_PORT" "$dir" >"$WORK/storescu.log" 2>&1 ||
		die "storescu to $tool failed (see storescu.log)"
	t1=$EPOCHREALTIME
	c1=$(cpu "$pid")
	grep -q '^E:' "$WORK/storescu.log" && die "storescu to $tool reported errors: $(grep -m 3 '^E:' "$WORK/storescu.log")"
	# sanping-station scp answers success once an instance is durable in its spool; the files reach
	# Dir/incoming soon after (untimed, bounded wait).
	local got i
	for i in $(seq 1 240); do
		got=$(count_files "$stored" "$pattern")
		[ "$got" -ge "$n" ] && break
		[ "$i" = 240 ] && die "$tool: $got files in $stored 60 s after storescu ended, want $n"
		sleep 0.25
	done
	[ "$got" = "$n" ] || die "$tool stored $got files, want $n"
	[ "$i" -gt 1 ] && log "$tool: all $n files in $stored $(sub "$t1" "$EPOCHREALTIME") s after storescu ended"
	record "$kase" "$tool" "$6" "$7" "$n" "$bytes" "$(sub "$t0" "$t1")" "$(sub "$c0" "$c1")"
	stop "$pid"
	rm -rf "$SPOOL"
}

# --- the runs ------------------------------------------------------------------------
wants() { case ",$CASES," in *,"$1",*) return 0 ;; esac; return 1; }

# pair REP FIRST-IS-STATION STATION-CMD... -- REFERENCE-CMD...: runs both, alternating who is
# first, so a drift of the machine during a repetition does not always favour one side.
pair() {
	local rep=$1 stationFirst=$2
	shift 2
	local a=() b=()
	while [ "$1" != -- ]; do
		a+=("$1")
		shift
	done
	shift
	b=("$@")
	if [ "$stationFirst" = 1 ]; then
		"${a[@]}" "$rep" 1
		"${b[@]}" "$rep" 2
	else
		"${b[@]}" "$rep" 1
		"${a[@]}" "$rep" 2
	fi
}

START=$EPOCHREALTIME
LOAD_START=$(cut -d ' ' -f 1-3 /proc/loadavg)
for rep in $(seq 1 "$REPS"); do
	first=$((rep % 2)) # odd repetitions: the station program first
	log "repetition $rep of $REPS"
	if wants ct-upload; then
		pair "$rep" "$first" run_upload -- run_stow
	fi
	if wants scp-small; then
		pair "$rep" "$first" run_scp scp-small client-scp "$SMALL_DIR" "$SMALL_N" "$SMALL_BYTES" -- \
			run_scp scp-small storescp "$SMALL_DIR" "$SMALL_N" "$SMALL_BYTES"
	fi
	if wants scp-ct; then
		pair "$rep" "$first" run_scp scp-ct client-scp "$CT_DIR" "$CT_N" "$CT_BYTES" -- \
			run_scp scp-ct storescp "$CT_DIR" "$CT_N" "$CT_BYTES"
	fi
done

# --- report --------------------------------------------------------------------------
{
	echo "# Station program benchmark (bench/station.sh)"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $REPS repetitions; $(printf '%.0f' "$(sub "$START" "$EPOCHREALTIME")") s of runs"
	echo "- machine: $(nproc) CPUs, Linux $(uname -r), $(go version | awk '{ print $3 }'), $(storescu --version | head -n 1 | tr -d '$' | sed 's/ *$//')"
	echo "- files (generated by \`dwbench -files-only\`, Explicit VR Little Endian, 16-bit): $SMALL_N MR ${SMALL_SIZE}x$SMALL_SIZE ($((SMALL_BYTES / SMALL_N / 1024)) KB each), $CT_N CT ${CT_SIZE}x$CT_SIZE ($((CT_BYTES / CT_N / 1024)) KB each)"
	echo "- load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
	echo "- loopback; before each timed run: \`sync\`, then ${PAUSE} s idle; the two programs alternate who goes first"
	echo
	"$BIN/stationbench" report "$RUNS"
	cat <<EOF

### How each case is run

- **ct-upload.** Each run starts the server (built from this tree) on a new, empty data
  directory with a hospital and one clinic under it (\`sanping site add\`) and one station token
  (\`sanping token create\`), so nothing is already stored. \`sanping-station upload\` runs after
  \`sanping-station login\` with that token; its time is the whole process: finding and reading the
  files, spooling the ~16 MB tar bundles (fsynced) in its journal, tus upload, and the
  server's ingest, until the summary line ($CT_N stored). STOW-RS is
  \`stationbench stow\`: the same files, read into memory first, then one instance per
  \`POST /dicom-web/studies\` (\`multipart/related; type="application/dicom"\`),
  **$STOW_WORKERS requests in flight**, same Bearer token; its time runs from the first
  request to the last answer, each answer checked (ReferencedSOPSequence names the instance).
- **scp-small, scp-ct.** \`storescu -aec AE +sd 127.0.0.1 PORT DIR\` (DCMTK, default PDU
  sizes and presentation contexts) sends the whole directory in one association; its wall
  time, from process start to exit, is the figure. The receiver is started before, with an
  empty directory, and must answer C-ECHO (\`echoscu\`) first: \`sanping-station scp -aet $STATION_AE
  -addr 127.0.0.1:PORT -dir SPOOL\` or \`storescp -aet $STORESCP_AE -od SPOOL PORT\`.
  \`TCP_NODELAY=1\` is set for the DCMTK programs. Afterwards the stored files are counted
  (all $SMALL_N or $CT_N must be there) and storescu's log must hold no error.
  Durability differs: \`sanping-station scp\` answers success only once the instance is durable
  (fsynced) on disk; \`storescp\` writes each file and never calls fsync or fdatasync
  (checked with strace), so its figure is an upper bound that leaves the flush to the kernel.
EOF
} >"$OUT"
log "report written to $OUT"
cat "$OUT"

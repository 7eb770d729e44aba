#!/usr/bin/env bash
# make bench-peers: run the same load against hearth and Prosody on this
# machine and write docs/benchmarks.md. Each phase runs on a freshly started
# server with a fresh copy of the same provisioned data. Only processes this
# script starts are stopped, by PID. Tunables are environment variables:
#
#   REPS=3 USERS=2000 IDLE_SESSIONS=2000 LOGIN_SECS=10 LOGIN_CONC=16
#   MSG_SECS=10 PAIRS=10 WINDOW=16 HOLD_SESSIONS=19900 HOLD_SECS=30
#   RESUMES=100 UNACKED=10 MAM_GRACE=60 PHASES="idle logins messages messages-mam resume rooms rooms-omemo"
#   ROOMS=1 OCCUPANTS=500 ROOM_RATE=5 ROOM_SECS=10 JOINS=20 ROOM_GRACE=60 OMEMO_KEYS=50
#   HEARTH_PORT=25222 PROSODY_PORT=15222 OUT=docs/benchmarks.md
#
# Archiving: hearth archives every 1:1 message unless a user opts out. The
# phases idle, logins and messages compare both servers without archives
# (hearth's clients set their archive default to "never", Prosody has no
# mod_mam); messages-mam and resume run with archiving on in both (hearth
# as it ships, Prosody with mod_mam on SQLite, bench/prosody-mam.cfg.lua.tmpl).
# Rooms (rooms, rooms-omemo): group chat with every room archived in both
# (hearth always archives rooms; Prosody with mod_muc_mam on SQLite,
# bench/prosody-rooms.cfg.lua.tmpl). The account benchadmin1 (a server admin
# in hearth) creates each room and makes it plaintext and open through the
# owner form, then OCCUPANTS clients per room join and send ROOM_RATE
# messages/s in all: 100-byte bodies, or (rooms-omemo) OMEMO-shaped
# messages with OMEMO_KEYS <key/> elements and no body.
# hearth runs with --e2ee off: Prosody enforces no encryption policy and
# both get the same plaintext bodies.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
USERS=${USERS:-2000}
IDLE_SESSIONS=${IDLE_SESSIONS:-2000}
LOGIN_SECS=${LOGIN_SECS:-10}
LOGIN_CONC=${LOGIN_CONC:-16}
MSG_SECS=${MSG_SECS:-10}
PAIRS=${PAIRS:-10}
WINDOW=${WINDOW:-16}
HOLD_SESSIONS=${HOLD_SESSIONS:-19900}
HOLD_SECS=${HOLD_SECS:-30}
RESUMES=${RESUMES:-100}
# A server that commits every archived message on its own (Prosody on
# SQLite) drains the in-flight window slowly after the senders stop.
MAM_GRACE=${MAM_GRACE:-60}
UNACKED=${UNACKED:-10}
PHASES=${PHASES:-idle logins messages messages-mam resume rooms rooms-omemo}
ROOMS=${ROOMS:-1}
OCCUPANTS=${OCCUPANTS:-500}
ROOM_RATE=${ROOM_RATE:-5}
ROOM_SECS=${ROOM_SECS:-10}
JOINS=${JOINS:-20}
# Prosody may need long to deliver everything to a large room.
ROOM_GRACE=${ROOM_GRACE:-60}
OMEMO_KEYS=${OMEMO_KEYS:-50}
ROOM_OWNER=benchadmin1 # a server admin in hearth: only they make rooms plaintext
HOLD=${HOLD:-1} # 0 skips the 19,900-session hold
HEARTH_PORT=${HEARTH_PORT:-25222}
PROSODY_PORT=${PROSODY_PORT:-15222}
OUT=${OUT:-$ROOT/docs/benchmarks.md}
PASSWORD=bench-password
PREFIX=bench
MECH=SCRAM-SHA-1 # Prosody 0.12's internal_hashed stores SHA-1 keys only

WORK=$(mktemp -d /tmp/hearth-bench.XXXXXX)
BIN=$WORK/bin
RES=$WORK/results
mkdir -p "$BIN" "$RES"
SERVER_PID=""

log() { printf '[bench-peers %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

stop_server() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}
trap 'stop_server; log "work directory kept: $WORK"' EXIT

# record runs a command and writes it, as run, into the report's command list.
record() {
	printf '%s\n' "$*" | sed "s#$WORK#\$WORK#g; s#$ROOT#.#g" >>"$RES/commands.txt"
	"$@"
}

wait_port() {
	local port=$1
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "nothing listens on port $port"
	return 1
}

# --- Prosody from Debian -----------------------------------------------------
if ! command -v prosody >/dev/null; then
	log "installing prosody from Debian"
	# The package would start the system service on 5222; this bench runs
	# its own instance, so stop the service it started, if any.
	apt-get install -y prosody >&2
	if [[ -s /run/prosody/prosody.pid ]] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
		log "stopping the system prosody service the package started"
		if [[ -d /run/systemd/system ]]; then systemctl disable --now prosody >&2 || true; else prosodyctl stop >&2 || true; fi
	fi
fi
# Prosody's SQL storage for mod_mam needs the SQLite driver for LuaDBI.
if ! dpkg-query -W -f '${Status}' lua-dbi-sqlite3 2>/dev/null | grep -q 'ok installed'; then
	log "installing lua-dbi-sqlite3 from Debian (Prosody's archive storage)"
	apt-get install -y lua-dbi-sqlite3 >&2
fi
PROSODY_VERSION=$(dpkg-query -W -f '${Version}' prosody 2>/dev/null || prosody --version | head -1)
DBI_VERSION=$(dpkg-query -W -f '${Version}' lua-dbi-sqlite3 2>/dev/null || echo '?')

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- build -------------------------------------------------------------------
log "building hearth and hearth-load"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN/hearth" ./cmd/hearth &&
	CGO_ENABLED=0 go build -trimpath -o "$BIN/hearth-load" ./cmd/hearth-load)
LOAD=$BIN/hearth-load
{
	echo "# build"
	echo "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o \$WORK/bin/hearth ./cmd/hearth"
	echo "CGO_ENABLED=0 go build -trimpath -o \$WORK/bin/hearth-load ./cmd/hearth-load"
} >>"$RES/commands.txt"

# --- provisioning: the same accounts in both ----------------------------------
log "provisioning $USERS accounts in hearth and Prosody"
echo "# provisioning ($USERS accounts ${PREFIX}1..${PREFIX}$USERS, password $PASSWORD)" >>"$RES/commands.txt"
HT=$WORK/hearth-template
# A first start makes the certificate and the dev admin, as a user's would.
echo "\$WORK/bin/hearth dev --data \$WORK/hearth-template --c2s-port $HEARTH_PORT --tls-port $((HEARTH_PORT + 1)) --log-level warn --e2ee off # first start, stopped with SIGTERM once it listens" >>"$RES/commands.txt"
"$BIN/hearth" dev --data "$HT" --c2s-port "$HEARTH_PORT" --tls-port $((HEARTH_PORT + 1)) --log-level warn --e2ee off >"$WORK/hearth-first.log" 2>&1 &
SERVER_PID=$!
wait_port "$HEARTH_PORT"
stop_server
for i in $(seq "$USERS"); do echo "$PREFIX$i $PASSWORD"; done >"$WORK/users.txt"
t0=$(date +%s%N)
record "$BIN/hearth" admin --data "$HT" user import "$WORK/users.txt" 2>"$WORK/import.log"
IMPORT_MS=$((($(date +%s%N) - t0) / 1000000))
echo "$ROOM_OWNER $PASSWORD" >"$WORK/admins.txt"
record "$BIN/hearth" admin --data "$HT" user import "$WORK/admins.txt" --role admin 2>>"$WORK/import.log"

PT=$WORK/prosody-template
mkdir -p "$PT/data/localhost/accounts"
record "$LOAD" --mode prosody-accounts --out "$PT/data/localhost/accounts" --users "$USERS" --user-prefix "$PREFIX" --password "$PASSWORD" --iterations 10000
record "$LOAD" --mode prosody-accounts --out "$PT/data/localhost/accounts" --users 1 --user-prefix "${ROOM_OWNER%1}" --password "$PASSWORD" --iterations 10000
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 30 -subj /CN=localhost 2>/dev/null
mkdir -p "$WORK/certs"
sed -e "s#@DIR@#$WORK#g; s#@C2S@#$PROSODY_PORT#; s#@TLS@#$((PROSODY_PORT + 1))#" \
	"$ROOT/bench/prosody.cfg.lua.tmpl" >"$WORK/prosody.cfg.lua"
sed -i "s#data_path = \"$WORK/data\"#data_path = \"$WORK/prosody/data\"#" "$WORK/prosody.cfg.lua"
cp "$WORK/prosody.cfg.lua" "$RES/prosody.cfg.lua"
sed -e "s#@DIR@#$WORK#g; s#@C2S@#$PROSODY_PORT#; s#@TLS@#$((PROSODY_PORT + 1))#" \
	"$ROOT/bench/prosody-mam.cfg.lua.tmpl" >"$WORK/prosody-mam.cfg.lua"
sed -i "s#data_path = \"$WORK/data\"#data_path = \"$WORK/prosody/data\"#" "$WORK/prosody-mam.cfg.lua"
cp "$WORK/prosody-mam.cfg.lua" "$RES/prosody-mam.cfg.lua"
sed -e "s#@DIR@#$WORK#g; s#@C2S@#$PROSODY_PORT#; s#@TLS@#$((PROSODY_PORT + 1))#" \
	"$ROOT/bench/prosody-rooms.cfg.lua.tmpl" >"$WORK/prosody-rooms.cfg.lua"
sed -i "s#data_path = \"$WORK/data\"#data_path = \"$WORK/prosody/data\"#" "$WORK/prosody-rooms.cfg.lua"
cp "$WORK/prosody-rooms.cfg.lua" "$RES/prosody-rooms.cfg.lua"

{
	echo "# servers: each phase starts one on a fresh copy of its template data"
	echo "cp -a \$WORK/hearth-template \$WORK/hearth && \$WORK/bin/hearth dev --data \$WORK/hearth --c2s-port $HEARTH_PORT --tls-port $((HEARTH_PORT + 1)) --log-level warn --e2ee off"
	echo "cp -a \$WORK/prosody-template/data \$WORK/prosody/data && prosody --config \$WORK/prosody.cfg.lua -F # from bench/prosody.cfg.lua.tmpl"
	echo "cp -a \$WORK/prosody-template/data \$WORK/prosody/data && prosody --config \$WORK/prosody-mam.cfg.lua -F # archive phases, from bench/prosody-mam.cfg.lua.tmpl"
	echo "cp -a \$WORK/prosody-template/data \$WORK/prosody/data && prosody --config \$WORK/prosody-rooms.cfg.lua -F # rooms phases, from bench/prosody-rooms.cfg.lua.tmpl"
} >>"$RES/commands.txt"

# --- servers -------------------------------------------------------------------
start_hearth() {
	rm -rf "$WORK/hearth"
	cp -a "$HT" "$WORK/hearth"
	"$BIN/hearth" dev --data "$WORK/hearth" --c2s-port "$HEARTH_PORT" --tls-port $((HEARTH_PORT + 1)) --log-level warn --e2ee off >>"$WORK/hearth.log" 2>&1 &
	SERVER_PID=$!
	PORT=$HEARTH_PORT
	wait_port "$PORT"
}

start_prosody() {
	rm -rf "$WORK/prosody"
	mkdir -p "$WORK/prosody"
	cp -a "$PT/data" "$WORK/prosody/data"
	prosody --config "$PROSODY_CFG" -F >>"$WORK/prosody.out" 2>&1 &
	SERVER_PID=$!
	PORT=$PROSODY_PORT
	wait_port "$PORT"
}

# phase SERVER NAME REP MODE ARGS...: fresh server, one load run, stop.
# Phases whose name has "mam" or is "resume" run Prosody with mod_mam.
phase() {
	local server=$1 ph=$2 rep=$3 mode=$4
	shift 4
	PROSODY_CFG=$WORK/prosody.cfg.lua
	if [[ $ph == *mam* || $ph == resume ]]; then PROSODY_CFG=$WORK/prosody-mam.cfg.lua; fi
	if [[ $ph == rooms* ]]; then PROSODY_CFG=$WORK/prosody-rooms.cfg.lua; fi
	"start_$server"
	sleep 2 # let it reach its resting state
	log "$server $ph run $rep"
	if [[ $rep == 1 ]]; then echo "# $server $ph (fresh server)" >>"$RES/commands.txt"; fi
	local cmd=("$LOAD" --label "$server" --port "$PORT" --server-pid "$SERVER_PID" --user-prefix "$PREFIX" --password "$PASSWORD" --users "$USERS" --mech "$MECH" --mode "$mode" "$@" --json)
	if [[ $rep == 1 ]]; then
		record "${cmd[@]}" >"$RES/$server.$ph.$rep.json"
	else
		"${cmd[@]}" >"$RES/$server.$ph.$rep.json"
	fi
	stop_server
}

wants() { [[ " $PHASES " == *" $1 "* ]]; }

for rep in $(seq "$REPS"); do
	for server in hearth prosody; do
		# Archiving off: hearth's users opt out (Prosody has no mod_mam here).
		off=()
		if [[ $server == hearth ]]; then off=(--mam-default never); fi
		if wants idle; then phase "$server" idle "$rep" idle --sessions "$IDLE_SESSIONS" --concurrency 16 --settle 10s; fi
		if wants logins; then phase "$server" logins "$rep" logins --duration "${LOGIN_SECS}s" --concurrency "$LOGIN_CONC" --login-users 100; fi
		if wants messages; then phase "$server" messages "$rep" messages --pairs "$PAIRS" --window "$WINDOW" --duration "${MSG_SECS}s" "${off[@]}"; fi
		# Archiving on in both: every message archived for sender and
		# recipient, then each client counts its archive.
		if wants messages-mam; then phase "$server" messages-mam "$rep" messages --pairs "$PAIRS" --window "$WINDOW" --duration "${MSG_SECS}s" --grace "${MAM_GRACE}s" --archive-count; fi
		if wants resume; then phase "$server" resume "$rep" resume --resumes "$RESUMES" --unacked "$UNACKED"; fi
		# Group chat, archived in both: R rooms × N clients, timed copies
		# at every occupant, then newcomers timed into the full rooms.
		roomargs=(--room-owner "$ROOM_OWNER" --rooms "$ROOMS" --occupants "$OCCUPANTS" --rate "$ROOM_RATE" --duration "${ROOM_SECS}s" --joins "$JOINS" --grace "${ROOM_GRACE}s" --concurrency 16)
		if wants rooms; then phase "$server" rooms "$rep" rooms "${roomargs[@]}" --payload body; fi
		if wants rooms-omemo; then phase "$server" rooms-omemo "$rep" rooms "${roomargs[@]}" --payload omemo --omemo-keys "$OMEMO_KEYS"; fi
	done
done

if [[ $HOLD == 1 ]]; then
	log "hearth: holding $HOLD_SESSIONS idle sessions"
	# One process may not open more descriptors than its RLIMIT_NOFILE; the tool
	# spreads the sessions over two processes and 127.0.0.x source addresses.
	phase hearth hold 1 idle --sessions "$HOLD_SESSIONS" --procs 2 --concurrency 32 --hold "${HOLD_SECS}s" --settle 10s
fi

{
	echo "date:       $(date -u +'%Y-%m-%d %H:%M UTC')"
	echo "machine:    $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
	echo "cpu:        $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "hearth:     $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown), $(go version | cut -d' ' -f3), CGO_ENABLED=0, --e2ee off"
	echo "prosody:    $PROSODY_VERSION (Debian), Lua $(lua5.4 -v 2>/dev/null | cut -d' ' -f2 || echo '?'), storage internal (files), mod_smacks, no mod_limits"
	echo "archiving:  idle/logins/messages: off (hearth clients set MAM default=never; Prosody without mod_mam)"
	echo "            messages-mam/resume: on (hearth as shipped; Prosody mod_mam, default_archive_policy = true,"
	echo "            archives in SQLite via lua-dbi-sqlite3 $DBI_VERSION, other data in files)"
	echo "accounts:   $USERS in each; SCRAM iterations: hearth 10000 (default), Prosody 10000 (default); mechanism $MECH"
	echo "hearth import of $USERS accounts (daemon stopped): ${IMPORT_MS} ms"
	echo "RLIMIT_NOFILE: soft $(ulimit -Sn), hard $(ulimit -Hn)"
	echo "load:       idle $IDLE_SESSIONS sessions; logins ${LOGIN_SECS}s × $LOGIN_CONC workers over 100 accounts;"
	echo "            messages ${MSG_SECS}s, $PAIRS pairs, window $WINDOW per direction, both directions, full JIDs, 100-byte bodies"
	echo "rooms:      $ROOMS room(s) × $OCCUPANTS occupants (each its own client), $ROOM_RATE messages/s in all for ${ROOM_SECS}s,"
	echo "            100-byte bodies (rooms) or OMEMO-shaped messages with $OMEMO_KEYS keys and no body (rooms-omemo);"
	echo "            rooms archived in both (hearth always; Prosody mod_muc_mam on SQLite), plaintext, open, non-anonymous;"
	echo "            then $JOINS newcomer joins into the full rooms, one at a time, with the server's default history"
	echo "resume:     $RESUMES resumptions per run, $UNACKED unacked messages each, TCP reset, new connection 100 ms later"
	echo "transport:  loopback, STARTTLS, TLS 1.3, X25519, ECDSA P-256 certificates on both"
	echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews throughput, less so CPU per operation)"
} >"$RES/env.txt"
if [[ -f $ROOT/bench/notes.md ]]; then cp "$ROOT/bench/notes.md" "$RES/notes.md"; fi

rm -rf "$WORK/hearth" "$WORK/prosody" # per-phase copies; templates and results stay
mkdir -p "$(dirname "$OUT")"
# The report replaces only its own part of the document: sections other
# benchmarks added after the marker are kept.
marker='<!-- end of the bench-peers report: what follows is kept when it reruns -->'
"$LOAD" --mode report --results "$RES" --out "$WORK/report.md"
{
	cat "$WORK/report.md"
	echo
	echo "$marker"
	if [ -f "$OUT" ]; then awk -v m="$marker" 'keep { print } $0 == m { keep = 1 }' "$OUT"; fi
} >"$WORK/benchmarks.md"
mv "$WORK/benchmarks.md" "$OUT"
log "wrote $OUT (raw results in $RES)"

#!/usr/bin/env bash
# Dev/test servers for PyTake, on loopback only, no Docker:
#   Kafka 4.x (KRaft, single node), PostgreSQL 15, and FerretDB (MongoDB wire
#   protocol; its data in a database of that PostgreSQL, or in SQLite files).
#
#   scripts/servers.sh install [kafka|postgres|mongo ...]  install what is missing
#   scripts/servers.sh up      [kafka|postgres|mongo ...]  install + start + wait until ready
#   scripts/servers.sh down    [kafka|postgres|mongo ...]  clean stop (no-op if not running)
#   scripts/servers.sh status                              one line per server
#   scripts/servers.sh env                                 export lines for the app/tests
#
# No server names = all three. Software is installed into a per-user cache that
# survives across clones (PYTAKE_CACHE_DIR); data, logs and PID files live in
# the clone's state dir (PYTAKE_STATE_DIR, default <repo>/.local).
# FerretDB stores in PostgreSQL (PYTAKE_MONGO_BACKEND=postgresql, the default: `up mongo`
# brings PostgreSQL up too) or in SQLite (PYTAKE_MONGO_BACKEND=sqlite).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/.." && pwd)

STATE_DIR=${PYTAKE_STATE_DIR:-$REPO_DIR/.local}
CACHE_DIR=${PYTAKE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pytake}
DATA_DIR=$STATE_DIR/data
LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run
CONF_DIR=$STATE_DIR/conf

HOST=127.0.0.1
DEFAULT_KAFKA_PORT=19092
DEFAULT_KAFKA_CONTROLLER_PORT=19093
DEFAULT_POSTGRES_PORT=15432
DEFAULT_MONGO_PORT=27117
KAFKA_PORT=${PYTAKE_KAFKA_PORT:-$DEFAULT_KAFKA_PORT}
KAFKA_CONTROLLER_PORT=${PYTAKE_KAFKA_CONTROLLER_PORT:-$DEFAULT_KAFKA_CONTROLLER_PORT}
POSTGRES_PORT=${PYTAKE_POSTGRES_PORT:-$DEFAULT_POSTGRES_PORT}
MONGO_PORT=${PYTAKE_MONGO_PORT:-$DEFAULT_MONGO_PORT}
PORT_VARS=(KAFKA_PORT KAFKA_CONTROLLER_PORT POSTGRES_PORT MONGO_PORT)
# Where a port is held by a process this state dir did not start (another clone's
# servers, say), `up` moves to a free port and keeps the choice here, so `env` and
# later runs agree. A port set with PYTAKE_<NAME>_PORT is never moved.
PORTS_FILE=$RUN_DIR/ports
if [[ -f $PORTS_FILE ]]; then
  while IFS='=' read -r key value; do
    explicit=PYTAKE_$key
    if [[ " ${PORT_VARS[*]} " == *" $key "* && $value =~ ^[0-9]+$ && -z ${!explicit:-} ]]; then
      printf -v "$key" '%s' "$value"
    fi
  done <"$PORTS_FILE"
  unset key value explicit
fi

# Kafka 4.1.x: KRaft only, Java 17+; librdkafka (confluent-kafka) was checked against it.
KAFKA_VERSION=${PYTAKE_KAFKA_VERSION:-4.1.2}
# Kafka 4.x logs via SLF4J 1.7; its distribution ships Log4j 2.24.x as binding.
LOG4J_VERSION=2.24.3
# Fixed cluster id (any valid base64 UUID): the dev cluster is never joined to another.
KAFKA_CLUSTER_ID=oC_YStUFQfuxw045S_zVzw
KAFKA_HEAP_OPTS=${PYTAKE_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}

PG_MAJOR=15
PG_BIN=${PYTAKE_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}

# Tried in order: newest first, older patch releases as fallbacks.
FERRETDB_VERSIONS=(v1.24.2 v1.24.1 v1.24.0)
# postgresql: about twice the write throughput of sqlite (audit benchmark), and it
# filters equality queries in SQL instead of decoding every document.
MONGO_BACKEND=${PYTAKE_MONGO_BACKEND:-postgresql}
FERRETDB_PG_DATABASE=ferretdb

READY_TIMEOUT=${PYTAKE_READY_TIMEOUT:-60}
STOP_TIMEOUT=${PYTAKE_STOP_TIMEOUT:-20}

ALL_SERVERS=(kafka postgres mongo)

# ---------------------------------------------------------------- helpers

log() { printf '%s\n' "$*" >&2; }
die() { printf 'servers.sh: error: %s\n' "$*" >&2; exit 1; }

# Print the tail of a server's log, to explain a failure.
show_log_tail() {
  local f=$LOG_DIR/$1.log
  if [[ -s $f ]]; then
    log "---- last lines of $f ----"
    tail -n "${2:-40}" "$f" >&2
    log "----"
  fi
}

fail_server() {
  local name=$1; shift
  log "servers.sh: error: $name: $*"
  show_log_tail "$name"
  exit 1
}

port_of() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;;
    postgres) echo "$POSTGRES_PORT" ;;
    mongo) echo "$MONGO_PORT" ;;
  esac
}

# TCP connect check with bash's /dev/tcp (no nc/ss dependency). The timeout
# guards against a connect that hangs instead of being refused.
port_open() {
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# A PID counts as ours only if it is alive (not a zombie) and its command line
# still looks like the server: guards against PID reuse after a reboot.
pid_matches() {
  local pid=$1 pattern=$2 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

cmd_pattern() {
  case $1 in
    kafka) echo 'kafka\.Kafka' ;;
    postgres) echo 'postgres' ;;
    mongo) echo 'ferretdb' ;;
  esac
}

pid_file() { echo "$RUN_DIR/$1.pid"; }

# Picks the port in variable $1 for the server $2 about to start: its default if free,
# else (unless PYTAKE_$1 fixes it) the next free port not recorded for another server
# of this state dir; records the choice.
claim_port() {
  local var=$1 name=$2 explicit=PYTAKE_$1 default=DEFAULT_$1 port taken=" " v
  if [[ -n ${!explicit:-} ]]; then
    port_open "${!var}" && die "$name: port $HOST:${!var} ($explicit) is already in use by another process"
    return 0
  fi
  printf -v "$var" '%s' "${!default}"
  if ! port_open "${!var}"; then
    save_ports
    return 0
  fi
  for v in "${PORT_VARS[@]}"; do [[ $v == "$var" ]] || taken+="${!v} "; done
  for ((port = ${!var} + 1; port < ${!var} + 200; port++)); do
    if [[ $taken != *" $port "* ]] && ! port_open "$port"; then
      log "$name: port $HOST:${!var} is in use by a process this state dir did not start; using $port"
      printf -v "$var" '%s' "$port"
      save_ports
      return 0
    fi
  done
  die "$name: port $HOST:${!var} is in use and no free port follows it"
}

save_ports() {
  local v
  mkdir -p "$RUN_DIR"
  for v in "${PORT_VARS[@]}"; do echo "$v=${!v}"; done >"$PORTS_FILE.tmp"
  mv -f "$PORTS_FILE.tmp" "$PORTS_FILE"
}

# Prints the PID of a running server; removes a stale PID file. Fails if not running.
running_pid() {
  local name=$1 f pid
  f=$(pid_file "$name")
  [[ -f $f ]] || return 1
  pid=$(head -n1 "$f" 2>/dev/null || true)
  if pid_matches "$pid" "$(cmd_pattern "$name")"; then
    echo "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}

# Keep the previous run's log as <name>.log.1, so readiness checks only see
# this run's lines and logs don't grow without bound.
rotate_log() {
  local f=$LOG_DIR/$1.log
  if [[ -f $f ]]; then mv -f "$f" "$f.1"; fi
  : >"$f"
}

# Serialise installs of the same thing across clones/concurrent runs.
with_lock() {
  local lockfile=$1; shift
  mkdir -p "$(dirname "$lockfile")"
  (
    flock -w 900 9 || die "timed out waiting for lock $lockfile"
    "$@"
  ) 9>"$lockfile"
}

ensure_state_dirs() {
  mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR" "$CONF_DIR"
}

validate_names() {
  local n
  for n in "$@"; do
    case $n in
      kafka | postgres | mongo) ;;
      *) die "unknown server '$n' (expected: kafka, postgres, mongo)" ;;
    esac
  done
}

# ---------------------------------------------------------------- kafka

KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION

find_java() {
  local java=${JAVA_HOME:+$JAVA_HOME/bin/java}
  [[ -n $java && -x $java ]] || java=$(command -v java || true)
  [[ -n $java ]] || die "kafka: java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  local major
  major=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
  [[ ${major%%.*} -ge 17 ]] 2>/dev/null || die "kafka: Java 17+ required, found '$major' ($java)"
  echo "$java"
}

kafka_installed() { [[ -f $KAFKA_HOME/.complete ]]; }

# Maven resolves the broker's runtime jars from Maven Central (~/.m2 is the
# download cache), then copies them into a versioned cache folder. The copy goes
# to a temp dir first and is renamed, so an interrupted install never looks done.
kafka_install_locked() {
  kafka_installed && return 0
  command -v mvn >/dev/null || die "kafka: mvn (Maven) not found"
  log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION with Maven into $KAFKA_HOME"
  local tmp
  tmp=$(mktemp -d "$CACHE_DIR/.kafka-$KAFKA_VERSION.XXXXXX")
  if ! mvn -B --no-transfer-progress -Dstyle.color=never \
    -f "$SCRIPT_DIR/servers/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
    tail -n 30 "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    die "kafka: Maven could not resolve Kafka $KAFKA_VERSION (output above)"
  fi
  rm -f "$tmp/mvn.log"
  [[ -f $tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf "$tmp"; die "kafka: broker jar missing after Maven run"; }
  echo "$KAFKA_VERSION" >"$tmp/.complete"
  rm -rf "$KAFKA_HOME"
  mv "$tmp" "$KAFKA_HOME"
  log "kafka: installed ($(find "$KAFKA_HOME/libs" -name '*.jar' | wc -l) jars)"
}

kafka_install() {
  if kafka_installed; then
    log "kafka: Kafka $KAFKA_VERSION already installed in $KAFKA_HOME"
    return 0
  fi
  with_lock "$CACHE_DIR/.kafka.lock" kafka_install_locked
}

kafka_write_config() {
  local dir=$CONF_DIR/kafka
  mkdir -p "$dir" "$DATA_DIR/kafka"
  # Single combined broker+controller with a static voter set: unlike a
  # dynamic (--standalone) quorum, the controller endpoint is not baked into
  # the metadata log, so the ports can be changed later without reformatting.
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/servers.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR/kafka
# Single node: every internal topic must live with one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
num.partitions=1
# Topics are created explicitly by the application.
auto.create.topics.enable=false
# No reason to delay the first consumer-group rebalance in dev/tests.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  # Console output goes to the log file (stdout is redirected there), which
  # also catches JVM errors. WARN overall, INFO for the start/stop lines.
  cat >"$dir/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/servers.sh. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Logger name="kafka.server.BrokerServer" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
EOF
}

kafka_java_cmd() {
  # shellcheck disable=SC2206 # heap options are meant to be word-split
  local heap=($KAFKA_HEAP_OPTS)
  JAVA_CMD=("$JAVA" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -XX:-UsePerfData -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$CONF_DIR/kafka/log4j2.xml"
    -cp "$KAFKA_HOME/libs/*")
}

kafka_start() {
  local pid
  if pid=$(running_pid kafka); then
    log "kafka: already running (pid $pid, port $KAFKA_PORT)"
    return 0
  fi
  claim_port KAFKA_PORT kafka
  claim_port KAFKA_CONTROLLER_PORT kafka
  JAVA=$(find_java)
  kafka_write_config
  kafka_java_cmd
  rotate_log kafka
  local logf=$LOG_DIR/kafka.log
  # KRaft needs the log dir formatted once; meta.properties marks it as done.
  if [[ ! -f $DATA_DIR/kafka/meta.properties ]]; then
    log "kafka: formatting storage in $DATA_DIR/kafka"
    "${JAVA_CMD[@]}" kafka.tools.StorageTool format --ignore-formatted \
      --config "$CONF_DIR/kafka/server.properties" --cluster-id "$KAFKA_CLUSTER_ID" \
      >>"$logf" 2>&1 || fail_server kafka "storage format failed"
  fi
  log "kafka: starting on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
  # 9>&-: don't let the daemon inherit the servers.lock descriptor.
  # setsid: own session, so it outlives this script and ignores the
  # terminal's SIGHUP/SIGINT. In a non-interactive shell the background job is
  # not a group leader, so setsid/nohup exec in place and $! is the JVM's PID.
  setsid nohup "${JAVA_CMD[@]}" kafka.Kafka "$CONF_DIR/kafka/server.properties" \
    >>"$logf" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file kafka)"
}

kafka_ready() {
  port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$LOG_DIR/kafka.log" 2>/dev/null
}

# ---------------------------------------------------------------- postgres

# initdb/postgres refuse to run as root: as root, run them as the 'postgres'
# OS user (from Debian's package); as a normal user, run them as that user.
# `cd /` avoids "could not change directory" warnings from an unreadable cwd.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

postgres_installed() { [[ -x $PG_BIN/postgres && -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]]; }

postgres_install_locked() {
  postgres_installed && return 0
  ((EUID == 0)) || die "postgres: $PG_BIN/postgres not found; install it with: sudo apt-get install -y postgresql-$PG_MAJOR"
  command -v apt-get >/dev/null || die "postgres: $PG_BIN/postgres not found and apt-get is unavailable"
  log "postgres: installing Debian package postgresql-$PG_MAJOR"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "postgresql-$PG_MAJOR" >&2
  postgres_installed || die "postgres: $PG_BIN/postgres still missing after apt-get install"
}

postgres_install() {
  if postgres_installed; then
    log "postgres: PostgreSQL $PG_MAJOR already installed in $PG_BIN"
    return 0
  fi
  with_lock "$CACHE_DIR/.postgres.lock" postgres_install_locked
}

# Sets PG_BASE (holds data/ and the socket dir). Normally the state dir; if the
# postgres OS user cannot traverse it (e.g. a clone under /root), a private
# folder under /var/tmp keyed by a hash of the state dir path is used instead.
postgres_paths() {
  PG_BASE=$STATE_DIR
  PG_FALLBACK=0
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || die "postgres: OS user 'postgres' missing (is postgresql-$PG_MAJOR installed?)"
    if ! as_pg test -x "$DATA_DIR" -a -x "$RUN_DIR" 2>/dev/null; then
      local h
      h=$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-12)
      PG_BASE=/var/tmp/pytake-$h
      PG_FALLBACK=1
    fi
  fi
  PGDATA_DIR=$PG_BASE/data/postgres
  PG_SOCKET_DIR=$PG_BASE/run/pgsocket
}

postgres_prepare_dirs() {
  if ((PG_FALLBACK)); then
    log "postgres: note: user 'postgres' cannot reach $STATE_DIR; keeping its data in $PG_BASE instead"
    mkdir -p "$PG_BASE/data" "$PG_BASE/run"
    chmod 755 "$PG_BASE" "$PG_BASE/data" "$PG_BASE/run"
  fi
  mkdir -p "$PGDATA_DIR" "$PG_SOCKET_DIR"
  if ((EUID == 0)); then
    chown postgres:postgres "$PGDATA_DIR" "$PG_SOCKET_DIR"
  fi
  chmod 700 "$PGDATA_DIR" "$PG_SOCKET_DIR"
}

postgres_initdb() {
  [[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
  log "postgres: initdb into $PGDATA_DIR"
  # Local socket: trust (the socket dir is private, mode 0700). TCP: password.
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync \
    >>"$LOG_DIR/postgres.log" 2>&1 || fail_server postgres "initdb failed"
  echo "include_if_exists = 'pytake.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

postgres_write_config() {
  # Regenerated on every start so port changes take effect.
  cat >"$PGDATA_DIR/pytake.conf" <<EOF
# Generated by scripts/servers.sh on every start; edits are overwritten.
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
# Dev/test only: trade crash safety for speed (a crash may corrupt this cluster).
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
  chmod 644 "$PGDATA_DIR/pytake.conf"
}

postgres_start() {
  local pid
  postgres_paths
  if pid=$(running_pid postgres); then
    log "postgres: already running (pid $pid, port $POSTGRES_PORT)"
    return 0
  fi
  claim_port POSTGRES_PORT postgres
  postgres_prepare_dirs
  rotate_log postgres
  postgres_initdb
  postgres_write_config
  # A postmaster.pid left by a killed server is handled by postgres itself.
  log "postgres: starting on $HOST:$POSTGRES_PORT (data $PGDATA_DIR)"
  # Without -l, the server's output goes to pg_ctl's stdout, i.e. our log file
  # (opened here, so the postgres user needs no write access to it). pg_ctl
  # puts the postmaster in its own session; -W: readiness is polled below.
  as_pg "$PG_BIN/pg_ctl" start -W -s -D "$PGDATA_DIR" >>"$LOG_DIR/postgres.log" 2>&1 </dev/null 9>&- \
    || fail_server postgres "pg_ctl start failed"
  # The postmaster's PID is on the first line of postmaster.pid.
  local i
  for ((i = 0; i < 100; i++)); do
    pid=$(head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && pid_matches "$pid" postgres; then
      echo "$pid" >"$(pid_file postgres)"
      return 0
    fi
    sleep 0.1
  done
  fail_server postgres "postmaster did not start (no postmaster.pid)"
}

postgres_ready() {
  "$PG_BIN/pg_isready" -q -h "$HOST" -p "$POSTGRES_PORT" -d postgres
}

psql_super() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$POSTGRES_PORT" -U postgres -d postgres "$@"
}

# Role and database for the app, created once; re-running only resets the password.
postgres_bootstrap() {
  psql_super <<'EOF' || fail_server postgres "could not create role pytake"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pytake') THEN
    CREATE ROLE pytake LOGIN CREATEDB PASSWORD 'pytake';
  ELSE
    ALTER ROLE pytake LOGIN CREATEDB PASSWORD 'pytake';
  END IF;
END
$$;
EOF
  if [[ -z $(psql_super -tAc "SELECT 1 FROM pg_database WHERE datname = 'pytake'") ]]; then
    psql_super -c "CREATE DATABASE pytake OWNER pytake" || fail_server postgres "could not create database pytake"
  fi
}

# ---------------------------------------------------------------- mongo (FerretDB)

mongo_bin_for() { echo "$CACHE_DIR/ferretdb-$1/bin/ferretdb"; }

mongo_find_bin() {
  local v
  for v in "${FERRETDB_VERSIONS[@]}"; do
    if [[ -x $(mongo_bin_for "$v") ]]; then
      mongo_bin_for "$v"
      return 0
    fi
  done
  return 1
}

find_go() {
  local go
  go=$(command -v go || true)
  [[ -n $go ]] || go=/usr/local/go/bin/go
  [[ -x $go ]] || die "mongo: Go toolchain not found (needed to build FerretDB)"
  echo "$go"
}

# Why not plain `go install .../cmd/ferretdb@vX`: that binary panics at start
# ("Invalid build/version/version.txt"), because the release's version.txt is
# generated at release time and absent from the module zip. So: fetch the
# module source from the Go module proxy, add version.txt, and `go build`.
mongo_build_version() {
  local v=$1 go=$2 src tmp
  src=$(GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go" mod download -json "github.com/FerretDB/FerretDB@$v" 2>/dev/null \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || return 1
  [[ -n $src && -d $src ]] || return 1
  tmp=$(mktemp -d "$CACHE_DIR/.ferretdb-$v.XXXXXX")
  cp -R "$src/." "$tmp/src"
  chmod -R u+w "$tmp/src"
  echo "$v" >"$tmp/src/build/version/version.txt"
  # Pure Go (SQLite via modernc.org/sqlite): no cgo needed.
  if ! (cd "$tmp/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    "$go" build -trimpath -o "$tmp/bin/ferretdb" ./cmd/ferretdb >"$tmp/build.log" 2>&1); then
    tail -n 30 "$tmp/build.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  rm -f "$tmp/build.log"
  rm -rf "$tmp/src"
  "$tmp/bin/ferretdb" --version >/dev/null || { rm -rf "$tmp"; return 1; }
  rm -rf "$CACHE_DIR/ferretdb-$v"
  mv "$tmp" "$CACHE_DIR/ferretdb-$v"
}

mongo_install_locked() {
  mongo_find_bin >/dev/null && return 0
  local go v
  go=$(find_go)
  for v in "${FERRETDB_VERSIONS[@]}"; do
    log "mongo: building FerretDB $v with $("$go" version) (takes a minute or two)"
    if mongo_build_version "$v" "$go"; then
      log "mongo: installed FerretDB $v in $CACHE_DIR/ferretdb-$v"
      return 0
    fi
    log "mongo: FerretDB $v failed to build, trying the next version"
  done
  die "mongo: could not build any of FerretDB ${FERRETDB_VERSIONS[*]}"
}

mongo_install() {
  local bin
  if bin=$(mongo_find_bin); then
    log "mongo: FerretDB already installed ($bin)"
    return 0
  fi
  with_lock "$CACHE_DIR/.ferretdb.lock" mongo_install_locked
}

# FerretDB's database in PostgreSQL, created once (as the app role: it may create databases).
mongo_pg_database() {
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$POSTGRES_PORT" -U pytake -d postgres)
  local exists="SELECT 1 FROM pg_database WHERE datname = '$FERRETDB_PG_DATABASE'"
  postgres_ready || die "mongo: FerretDB stores in PostgreSQL, which does not answer on $HOST:$POSTGRES_PORT"
  if [[ -z $(PGPASSWORD=pytake "${psql[@]}" -tAc "$exists") ]]; then
    log "mongo: creating database $FERRETDB_PG_DATABASE in PostgreSQL (port $POSTGRES_PORT)"
    PGPASSWORD=pytake "${psql[@]}" -c "CREATE DATABASE $FERRETDB_PG_DATABASE" >&2 \
      || die "mongo: could not create database $FERRETDB_PG_DATABASE"
  fi
}

# Sets MONGO_STORAGE (FerretDB's backend flags) and MONGO_WHERE (for the log).
mongo_storage() {
  case $MONGO_BACKEND in
    postgresql)
      mongo_pg_database
      MONGO_STORAGE=(--handler=postgresql
        "--postgresql-url=postgres://pytake:pytake@$HOST:$POSTGRES_PORT/$FERRETDB_PG_DATABASE")
      MONGO_WHERE="PostgreSQL database $FERRETDB_PG_DATABASE on port $POSTGRES_PORT"
      ;;
    sqlite)
      mkdir -p "$DATA_DIR/mongo/sqlite"
      # FerretDB turns WAL on; synchronous=NORMAL then syncs at checkpoints, not at every
      # commit (dev/test: an OS crash may lose the last writes, as with PostgreSQL's fsync=off).
      MONGO_STORAGE=(--handler=sqlite "--sqlite-url=file:$DATA_DIR/mongo/sqlite/?_pragma=synchronous(normal)")
      MONGO_WHERE="SQLite in $DATA_DIR/mongo/sqlite"
      ;;
    *) die "mongo: PYTAKE_MONGO_BACKEND must be postgresql or sqlite, not '$MONGO_BACKEND'" ;;
  esac
}

mongo_start() {
  local pid bin
  if pid=$(running_pid mongo); then
    log "mongo: already running (pid $pid, port $MONGO_PORT)"
    return 0
  fi
  claim_port MONGO_PORT mongo
  bin=$(mongo_find_bin) || die "mongo: FerretDB not installed"
  mongo_storage
  mkdir -p "$DATA_DIR/mongo"
  rotate_log mongo
  log "mongo: starting FerretDB on $HOST:$MONGO_PORT ($MONGO_WHERE)"
  # --debug-addr=-: no HTTP metrics listener (its default port 8088 could clash).
  # --test-batch-size: documents per SQL INSERT (and SQLite transaction) of an insert
  # command; the default 100 splits the audit's batches into many small ones.
  # GOGC=400: less garbage collection work per insert, for a few more MB of heap.
  GOGC=400 setsid nohup "$bin" \
    --listen-addr="$HOST:$MONGO_PORT" \
    "${MONGO_STORAGE[@]}" \
    --test-batch-size=1000 \
    --state-dir="$DATA_DIR/mongo" \
    --telemetry=disable --debug-addr=- \
    --log-level=warn --log-format=text \
    >>"$LOG_DIR/mongo.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pid_file mongo)"
}

mongo_ready() { port_open "$MONGO_PORT"; }

# ---------------------------------------------------------------- commands

install_one() {
  case $1 in
    kafka) kafka_install ;;
    postgres) postgres_install ;;
    mongo) mongo_install ;;
  esac
}

start_one() {
  case $1 in
    kafka) kafka_start ;;
    postgres) postgres_start ;;
    mongo) mongo_start ;;
  esac
}

ready_one() {
  case $1 in
    kafka) kafka_ready ;;
    postgres) postgres_ready ;;
    mongo) mongo_ready ;;
  esac
}

wait_ready() {
  local name=$1 start=$SECONDS pid
  pid=$(head -n1 "$(pid_file "$name")" 2>/dev/null || true)
  until ready_one "$name"; do
    # Alive is what counts here: right after the fork, before the exec, the process still
    # carries this script's command line, so running_pid's command check would call it gone.
    if ! pid_matches "$pid" ""; then
      rm -f "$(pid_file "$name")"
      fail_server "$name" "process exited during startup"
    fi
    if ((SECONDS - start >= READY_TIMEOUT)); then
      fail_server "$name" "not ready after ${READY_TIMEOUT}s (pid $pid still running; see log)"
    fi
    sleep 0.2
  done
}

cmd_install() {
  mkdir -p "$CACHE_DIR"
  local n
  for n in "$@"; do install_one "$n"; done
}

has_name() {
  local wanted=$1 n; shift
  for n in "$@"; do [[ $n == "$wanted" ]] && return 0; done
  return 1
}

cmd_up() {
  local names=("$@") first=() n
  # FerretDB over PostgreSQL: PostgreSQL comes up (and is ready) before it.
  if [[ $MONGO_BACKEND == postgresql ]] && has_name mongo "${names[@]}"; then
    # Its own PostgreSQL: a server this state dir did not start moves it to another port.
    has_name postgres "${names[@]}" || names=(postgres "${names[@]}")
    for n in "${names[@]}"; do [[ $n == mongo ]] || first+=("$n"); done
    up_servers "${first[@]}"
    up_servers mongo
  else
    up_servers "${names[@]}"
  fi
}

up_servers() {
  cmd_install "$@"
  ensure_state_dirs
  local n pid started=()
  # Start everything first, then wait: the servers boot in parallel.
  for n in "$@"; do
    if pid=$(running_pid "$n"); then
      log "$n: already running (pid $pid, port $(port_of "$n"))"
    else
      start_one "$n"
      started+=("$n")
    fi
  done
  for n in "${started[@]}"; do
    wait_ready "$n"
    if [[ $n == postgres ]]; then
      postgres_bootstrap
    fi
    log "$n: ready on $HOST:$(port_of "$n") (pid $(running_pid "$n"))"
  done
}

# SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 pattern start=$SECONDS
  pattern=$(cmd_pattern "$name")
  kill -TERM "$pid" 2>/dev/null || true
  while pid_matches "$pid" "$pattern"; do
    if ((SECONDS - start >= STOP_TIMEOUT)); then
      log "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
}

stop_one() {
  local name=$1 pid
  if ! pid=$(running_pid "$name"); then
    log "$name: not running"
    return 0
  fi
  log "$name: stopping (pid $pid)"
  if [[ $name == postgres ]]; then
    postgres_paths
    # Fast shutdown: roll back open sessions instead of waiting for clients
    # (plain SIGTERM would be a "smart" shutdown that can wait forever).
    as_pg "$PG_BIN/pg_ctl" stop -s -D "$PGDATA_DIR" -m fast -w -t "$STOP_TIMEOUT" >&2 || true
    if pid_matches "$pid" postgres; then
      stop_pid postgres "$pid"
    fi
  else
    stop_pid "$name" "$pid"
  fi
  if pid_matches "$pid" "$(cmd_pattern "$name")"; then
    die "$name: pid $pid would not stop"
  fi
  rm -f "$(pid_file "$name")"
  log "$name: stopped"
}

cmd_down() {
  local n
  # FerretDB first: it may store in PostgreSQL.
  if has_name mongo "$@"; then stop_one mongo; fi
  for n in "$@"; do [[ $n == mongo ]] || stop_one "$n"; done
}

cmd_status() {
  local n pid
  for n in "${ALL_SERVERS[@]}"; do
    if pid=$(running_pid "$n"); then
      printf '%-9s running  pid %-8s port %s\n' "$n" "$pid" "$(port_of "$n")"
    else
      printf '%-9s stopped  pid %-8s port %s\n' "$n" "-" "$(port_of "$n")"
    fi
  done
}

cmd_env() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT"
  echo "export DATABASE_URL=postgresql+asyncpg://pytake:pytake@$HOST:$POSTGRES_PORT/pytake"
  echo "export MONGODB_URL=mongodb://$HOST:$MONGO_PORT/"
}

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  (($# >= 1)) || usage
  local cmd=$1; shift
  local names=("$@")
  ((${#names[@]})) || names=("${ALL_SERVERS[@]}")
  validate_names "${names[@]}"
  case $cmd in
    install) cmd_install "${names[@]}" ;;
    up | down)
      # One up/down at a time per state dir.
      ensure_state_dirs
      with_lock "$RUN_DIR/servers.lock" "cmd_$cmd" "${names[@]}"
      ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) log "servers.sh: unknown command '$cmd'"; usage ;;
  esac
}

main "$@"

# Shared by the benchmark scripts that run a server example and load it;
# sourced, not run. Gives:
# - `work`: a scratch directory, removed on exit;
# - `start NAME CMD...`: runs CMD in the background (stdout and stderr in
#   $work/NAME.out and .err), waits until it prints its loopback address,
#   sets `pid` and `addr`; exits with the server's stderr if it never does;
# - `stop`: stops the server `start` ran (also done on any exit);
# - `cpu_ticks PID`: CPU time (user + system, all threads) of PID so far,
#   in clock ticks (`getconf CLK_TCK` per second);
# - `load URL [WRK ARGS]`: `wrk -t1 -c64 -d${duration}s` on CPU 1 against
#   the server `start` ran; prints its requests/s and the server's CPU time
#   per request in microseconds.
# - `need_wrk`: exits with a hint unless wrk is installed;
# - `build_example NAME FEATURES`: builds examples/NAME in release with
#   FEATURES, saying so, and sets `bin` to it.
work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

start() {
    local name=${1//\//-}
    shift
    # Emptied here, before the background job starts: the job's own
    # redirection truncates them only once it runs, and until then the
    # wait below could read the previous server's address.
    : > "$work/$name.out"
    : > "$work/$name.err"
    "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pid=$!
    addr=""
    for _ in $(seq 100); do
        addr=$(grep -m1 -o "127\.0\.0\.1:[0-9]*" "$work/$name.out" 2>/dev/null) && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$addr" ]]; then
        echo "$* did not print its address:" >&2
        cat "$work/$name.err" >&2
        exit 1
    fi
}

stop() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
}

cpu_ticks() {
    # The fields after the ")" that closes the command name (which may hold
    # spaces): utime is the 12th, stime the 13th.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

load() {
    local url=$1; shift
    local before after rps requests
    before=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c64 -d"${duration}s" "$@" "$url" > "$work/wrk.txt"
    after=$(cpu_ticks "$pid")
    grep -E "Non-2xx|Socket errors" "$work/wrk.txt" >&2 || true
    if ! grep -q "Requests/sec" "$work/wrk.txt"; then
        echo "wrk measured nothing against $url:" >&2
        cat "$work/wrk.txt" >&2
        exit 1
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    echo "$rps $(python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) / $requests * 1e6:.2f}')")"
}

need_wrk() {
    command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
}

build_example() {
    echo "== cargo build --release --example $1 --features $2"
    cargo build --release --example "$1" --features "$2"
    bin=target/release/examples/$1
}

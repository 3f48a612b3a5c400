# Shared by the scripts that count a server's instructions per request
# (benches/http_instructions.sh, benches/axum_instructions.sh); sourced,
# not run. Gives:
# - `callgrind_requests DIR SIGNAL REQUESTS CMD...`: runs CMD (a server
#   example that prints its loopback address) under valgrind's callgrind,
#   its files in DIR; sends it REQUESTS sequential keep-alive `GET /`
#   (benches/http_client.py), stops it with SIGNAL (INT, TERM) and prints
#   callgrind's instruction total for the whole run.
callgrind_requests() {
    local dir=$1 signal=$2 requests=$3
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        "$@" > "$dir/out" 2> "$dir/err" &
    local pid=$! addr=""
    for _ in $(seq 600); do
        addr=$(grep -m1 -o "127\.0\.0\.1:[0-9]*" "$dir/out" 2>/dev/null) && break
        sleep 0.1
    done
    [[ -n "$addr" ]] || { cat "$dir/err" >&2; exit 1; }
    python3 benches/http_client.py "$addr" "$requests"
    kill -"$signal" "$pid"
    wait "$pid" || true
    sed -n 's/^summary: //p' "$dir/cg.out"
}

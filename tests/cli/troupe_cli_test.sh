#!/usr/bin/env bash
# The troupe executable's command-line cases, one function each; ctest runs
#   troupe_cli_test.sh CASE TROUPE_BINARY SOURCE_DIR
# Each case checks the exit code and the words a user reads.
set -u
case_name=$1
troupe=$2
src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run CMD...: runs it, keeps its output in $out and its exit code in $rc.
run() {
  out=$("$@" 2>&1)
  rc=$?
  printf '%s\n' "$out"
}

expect_rc() {
  [ "$rc" -eq "$1" ] || { echo "FAIL: exit code $rc, expected $1"; exit 1; }
}

expect_line() {
  printf '%s\n' "$out" | grep -qxF -- "$1" || { echo "FAIL: no line: $1"; exit 1; }
}

expect_text() {
  printf '%s\n' "$out" | grep -qF -- "$1" || { echo "FAIL: no text: $1"; exit 1; }
}

bad_conf() {
  printf '%s\n' "$@" > "$tmp/bad.conf"
}

case "$case_name" in
  node_survives_crashes)
    run "$troupe" node --duration 2s --rate 2000 --crash-every 50 --expect-no-loss --status-every 0
    expect_rc 0
    expect_text "lost 0, workers killed"
    ;;
  node_refuses_bad_spec)
    run "$troupe" node --instances 0
    expect_rc 2
    expect_line "troupe node: invalid_spec: group 'echo': zero instances"
    ;;
  node_refuses_bad_duration)
    run "$troupe" node --duration 5x
    expect_rc 2
    expect_line "troupe node: invalid_argument: bad duration '5x' (use e.g. 250ms, 2s, 1m)"
    ;;
  node_refuses_bad_log_level)
    run "$troupe" node --config "$src/cluster.conf" --name n1 --log-level loud
    expect_rc 2
    expect_line "troupe node: --log-level: invalid_argument: unknown log level 'loud' (expected error, warning, info, debug or trace)"
    run "$troupe" node --config "$src/cluster.conf" --name n1 --log-format xml
    expect_rc 2
    expect_line "troupe node: --log-format: invalid_argument: unknown log format 'xml' (expected text or json)"
    ;;
  check_default)
    run "$troupe" check "$src/cluster.conf"
    expect_rc 0
    expect_text "$src/cluster.conf: ok: cluster troupe-local, 3 nodes, 8 groups"
    expect_line "  fraud-detector (fraud-detector, 3 instances): #0@n2, #1@n3, #2@n1"
    expect_line "  alerter (alerter, 3 instances): #0@n3, #1@n1, #2@n2"
    ;;
  check_without)
    run "$troupe" check "$src/cluster.conf" --without n2,n3
    expect_rc 0
    expect_line "  fraud-detector (fraud-detector, 3 instances): #0@n1 (moved), #1@n1 (moved), #2@n1"
    expect_line "  alerter (alerter, 3 instances): #0@n1 (moved), #1@n1, #2@n1 (moved)"
    ;;
  check_unplaceable)
    run "$troupe" check "$src/cluster.conf" --without n1,n2
    expect_rc 0
    expect_line "  ranker (ranker, 2 instances): no live node allowed: answered by fallback 'trending'"
    ;;
  check_unknown_key)
    bad_conf '[cluster]' 'name = "x"' 'secret = "0123456789"' 'bogus = 1'
    run "$troupe" check "$tmp/bad.conf"
    expect_rc 2
    expect_text "$tmp/bad.conf:4: cluster.bogus: unknown key"
    ;;
  check_bad_domain_setting)
    # A domain's own setting, checked against the domain's registered schema.
    bad_conf '[cluster]' 'name = "x"' 'secret = "0123456789"' \
             '[[node]]' 'name = "n1"' 'cluster_port = 7001' 'http_port = 8001' \
             '[[group]]' 'name = "r"' 'domain = "ranker"' 'settings = { top_k = 500 }'
    run "$troupe" check "$tmp/bad.conf"
    expect_rc 2
    expect_line "$tmp/bad.conf:11: group[0].settings.top_k: 500 is out of range (at least 1, at most 100)"
    bad_conf '[cluster]' 'name = "x"' 'secret = "0123456789"' \
             '[[node]]' 'name = "n1"' 'cluster_port = 7001' 'http_port = 8001' \
             '[[group]]' 'name = "a"' 'domain = "alerter"' 'settings = { remember = 7 }'
    run "$troupe" check "$tmp/bad.conf"
    expect_rc 2
    expect_line "$tmp/bad.conf:11: group[0].settings.remember: expected a duration string such as \"500ms\", got an integer"
    ;;
  check_lists_domains)
    run "$troupe" check --domains
    expect_rc 0
    expect_text "ranker (fallbacks: trending)"
    expect_text "top_k  integer  10  1 to 100"
    ;;
  check_unknown_node)
    run "$troupe" check "$src/cluster.conf" --without n9
    expect_rc 2
    expect_text "unknown node 'n9'"
    ;;
  check_missing_file)
    run "$troupe" check "$tmp/none.conf"
    expect_rc 2
    expect_line "$tmp/none.conf: cannot open the topology file"
    ;;
  token_is_a_signed_expiring_jwt)
    # A copy of the file, so that the generated key lands in its own state
    # directory.
    cp "$src/cluster.conf" "$tmp/cluster.conf"
    run "$troupe" token ana --ttl 2h --config "$tmp/cluster.conf"
    expect_rc 0
    token=$out
    key="$tmp/.troupe-state/client-token.key"
    [ "$(stat -c %a "$key")" = 600 ] || { echo "FAIL: the key file is not owner-only"; exit 1; }
    b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
    unb64url() { local x; x=$(tr -- '-_' '+/'); while [ $(( ${#x} % 4 )) -ne 0 ]; do x="$x="; done; printf '%s' "$x" | base64 -d; }
    # The signature is HMAC-SHA256 of "header.payload" keyed by the key file.
    want=$(printf '%s' "${token%.*}" \
      | openssl dgst -sha256 -mac HMAC -macopt "key:$(head -1 "$key")" -binary | b64url)
    [ "${token##*.}" = "$want" ] || { echo "FAIL: signature ${token##*.}, expected $want"; exit 1; }
    header=$(printf '%s' "${token%%.*}" | unb64url)
    payload=$(printf '%s' "$token" | cut -d. -f2 | unb64url)
    [ "$header" = '{"alg":"HS256","typ":"JWT"}' ] || { echo "FAIL: header $header"; exit 1; }
    out=$payload
    expect_text '"sub":"ana"'
    expect_text '"role":"user"'
    expect_text '"iss":"troupe-local"'
    exp=$(printf '%s' "$payload" | sed -n 's/.*"exp":\([0-9]*\).*/\1/p')
    iat=$(printf '%s' "$payload" | sed -n 's/.*"iat":\([0-9]*\).*/\1/p')
    [ $((exp - iat)) -eq 7200 ] || { echo "FAIL: exp - iat = $((exp - iat))"; exit 1; }
    # The same key signs the next token; a TTL past 30 days is refused.
    run "$troupe" token bob --role operator --config "$tmp/cluster.conf"
    expect_rc 0
    run "$troupe" token ana --ttl 721h --config "$tmp/cluster.conf"
    expect_rc 2
    expect_text "from 1s to 720h (30 days)"
    run "$troupe" token ana --config "$tmp/none.conf"
    expect_rc 2
    ;;
  *)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
echo "ok: $case_name"

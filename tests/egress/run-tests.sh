#!/usr/bin/env bash
# The egress proxy against real servers on this machine: a network namespace with only loopback
# (the sandbox), HTTP and HTTPS servers on the host's 127.0.0.1, test names in an /etc/hosts that
# only the proxy sees (bind-mounted in a mount namespace of its own, so the resolver it uses in
# production is the one tested). Needs root, musl-gcc (or cc), curl, openssl, python3, iproute2
# and util-linux; makes a cgroup of its own under each hierarchy's root (removed at the end). No
# traffic leaves the machine. Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root: the test makes network and mount namespaces"; exit 2; }

work=$(mktemp -d /tmp/agentsandbox-egress-test.XXXXXX)
chmod 711 "$work" # the proxy run as another user reaches its directory
ns="agentsandbox-egress-test-$$"
pids=()
cgroups=() # made by the test under a hierarchy's root, removed once empty
passed=0 failed=0

cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    for dir in "${cgroups[@]}"; do
        for _ in $(seq 20); do rmdir "$dir" 2>/dev/null && break; [ -d "$dir" ] || break; sleep 0.1; done
    done
    ip netns del "$ns" 2>/dev/null
    ip netns del "$ns-own" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { passed=$((passed + 1)); echo "  ok    $1"; }
fail() { failed=$((failed + 1)); echo "  FAIL  $1"; [ $# -gt 1 ] && echo "        $2"; }
check() { local name=$1 out; shift; if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(tail -c 300 <<<"$out")"; fi; }
inside() { nsenter --net="/run/netns/$ns" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
state() { python3 -c "import json, sys; print(json.load(open('$work/state.json'))$1)"; }
# The state file is written at most four times a second: wait until it has caught up.
state_is() { for _ in $(seq 40); do [ "$(state "$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.1; done; echo "state$1 is $(state "$1" 2>/dev/null), not $2"; return 1; }
log_has() { grep -F "\"host\":\"$1\",\"port\":$2," "$work/refused.log" | grep -qF "$3"; }

echo "Building"
# As build.ps1 builds the guest agent; CC and CFLAGS replace that, e.g. for a sanitizer build.
compiler=${CC:-$(command -v musl-gcc || command -v cc)}
# shellcheck disable=SC2086
"$compiler" ${CFLAGS:--static -Os} -Wall -Werror -o "$work/agentsandbox-egress" "$root/src/egress-proxy/proxy.c" -lpthread || exit 1
proxy_bin="$work/agentsandbox-egress"

echo "Setting up"
ip netns add "$ns" || exit 1
http=$(free_port) https=$(free_port) port=3128
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=allowed.test \
    -addext "subjectAltName=DNS:allowed.test,DNS:denied.test,DNS:other.test" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null || exit 1
python3 "$here/servers.py" "$http" "$https" "$work/cert.pem" "$work/key.pem" "$work/requests.log" & pids+=($!)
printf '127.0.0.1 localhost\n::1 localhost\n127.0.0.1 allowed.test denied.test other.test\n168.63.129.16 wire.test\n' >"$work/hosts"
printf '# the test servers\nallowed.test\n127.0.0.1\n' >"$work/policy"

start_proxy() { # DIR: its policy, log and state; the proxy sees the test's /etc/hosts, and only it does
    local dir=$1
    shift
    unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$work/hosts" \
        "$proxy_bin" --netns "/run/netns/$ns" --port "$port" --policy "$dir/policy" --log "$dir/refused.log" \
        --state "$dir/state.json" "$@" 2>>"$work/proxy.err" &
    proxy=$!
    pids+=("$proxy")
    for _ in $(seq 50); do [ -s "$dir/state.json" ] && return 0; sleep 0.1; done
    echo "the proxy did not start:"; cat "$work/proxy.err"; exit 1
}
start_proxy "$work"
main_proxy=$proxy
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$http/" && break; sleep 0.1; done

proxied() { inside curl -sS -m 10 -x "http://127.0.0.1:$port" --cacert "$work/cert.pem" "$@"; }
code() { proxied -o /dev/null -w '%{http_code}' "$@" 2>/dev/null; }
connect_code() { proxied -o /dev/null -w '%{http_connect}' "$@" 2>/dev/null; }

echo "Allowed names"
check "HTTP to an allowed name (-x)" test "$(proxied "http://allowed.test:$http/a")" = "hello /a host=allowed.test:$http proxy-authorization=None connection=close"
out=$(inside env HTTPS_PROXY="http://127.0.0.1:$port" curl -sS -m 10 --cacert "$work/cert.pem" "https://allowed.test:$https/b" 2>&1)
check "HTTPS to an allowed name (HTTPS_PROXY)" test "$out" = "hello /b host=allowed.test:$https proxy-authorization=None connection=None"
out=$(proxied -H 'Host: denied.test' -H 'Proxy-Authorization: Basic eDp5' -H 'Connection: keep-alive, X-Secret' -H 'X-Secret: 1' "http://ALLOWED.test.:$http/c?q=1")
check "the Host field comes from the URI; hop-by-hop fields are not passed on" test "$out" = "hello /c?q=1 host=allowed.test:$http proxy-authorization=None connection=close"
head -c 300000 /dev/urandom >"$work/body"
sum=$(sha256sum <"$work/body" | cut -d' ' -f1)
check "POST with Content-Length" test "$(proxied --data-binary @"$work/body" "http://allowed.test:$http/post")" = "got 300000 bytes sha256 $sum"
check "POST chunked" test "$(proxied -H 'Transfer-Encoding: chunked' --data-binary @"$work/body" "http://allowed.test:$http/post")" = "got 300000 bytes sha256 $sum"
check "POST over HTTPS" test "$(proxied --data-binary @"$work/body" "https://allowed.test:$https/post")" = "got 300000 bytes sha256 $sum"

echo "Refusals"
out=$(proxied -i "http://denied.test:$http/")
check "HTTP to a name not listed is 403" grep -q '^HTTP/1.1 403' <<<"$out"
check "the 403 names the host and the reason" grep -qF "refused denied.test:$http: the host is not in the allowed hosts" <<<"$out"
check "... and it is logged" log_has denied.test "$http" '"reason":"the host is not in the allowed hosts"'
check "HTTPS (CONNECT) to a name not listed is 403" test "$(connect_code "https://denied.test:$https/")" = 403
check "an IP literal not listed is refused" test "$(code "http://127.0.0.2:$http/")" = 403
check "... logged as an address" log_has 127.0.0.2 "$http" 'the address is not in the allowed hosts'
check "an IPv6 literal not listed is refused" test "$(connect_code "https://[::1]:$https/")" = 403
check "an address spelled as a number (2130706433) is an address, not a name" test "$(code "http://2130706434:$http/")" = 403
check "... logged as 127.0.0.2" log_has 127.0.0.2 "$http" 'not in the allowed hosts'
check "an allowed address is reached (127.0.0.1 is listed)" test "$(code "http://127.0.0.1:$http/")" = 200
check "a name by its suffix is not allowed by the name (sub.allowed.test)" test "$(code "http://sub.allowed.test:$http/")" = 403

echo "TLS server name"
sni() { inside openssl s_client -proxy "127.0.0.1:$port" -connect "allowed.test:$https" -CAfile "$work/cert.pem" "$@" </dev/null 2>&1; }
check "openssl through CONNECT with the matching SNI completes the handshake" grep -q 'Verify return code: 0' <<<"$(sni -servername allowed.test)"
out=$(sni -servername denied.test)
check "CONNECT allowed.test with SNI denied.test is cut off" grep -q 'alert access denied' <<<"$out"
check "... and logged" log_has allowed.test "$https" 'the TLS server name (SNI) denied.test is not the CONNECT host'
check "curl --connect-to (CONNECT allowed.test, SNI other.test) fails" test "$(proxied -o /dev/null -w '%{http_code}' --connect-to "other.test:$https:allowed.test:$https" "https://other.test:$https/" 2>/dev/null)" = 000
check "... logged" log_has allowed.test "$https" 'SNI) other.test is not'
check "a ClientHello without SNI is cut off" grep -q 'alert access denied' <<<"$(sni -noservername)"
check "... logged" log_has allowed.test "$https" 'names no server (SNI)'
out=$(inside python3 -c "
import socket, ssl, time
o = ssl.MemoryBIO()
tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), o, server_hostname='allowed.test')
try: tls.do_handshake()
except ssl.SSLWantReadError: pass
hello = o.read()
s = socket.create_connection(('127.0.0.1', $port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b'CONNECT allowed.test:$https HTTP/1.1\r\n\r\n'); s.recv(100)
for b in hello: s.send(bytes([b])); time.sleep(0.001)
s.settimeout(5); print(s.recv(1)[0])" 2>&1)
check "a ClientHello trickled in a byte at a time is read (and answered by the server)" test "$out" = 22
out=$(inside bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf 'CONNECT allowed.test:$http HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n' >&3; timeout 5 cat <&3" | tr -d '\0')
check "plain HTTP inside a CONNECT tunnel to a name is cut off" grep -q '^HTTP/1.1 200 Connection established' <<<"$out"
check "... logged" log_has allowed.test "$http" 'not a TLS ClientHello'

echo "Malformed requests"
raw() { inside bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf '$1' >&3; timeout 5 cat <&3" 2>/dev/null | head -1; }
check "an origin-form request is 400" grep -q ' 400 ' <<<"$(raw 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')"
check "an obsolete folded field is 400" grep -q ' 400 ' <<<"$(raw "GET http://allowed.test:$http/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n")"
check "Content-Length with Transfer-Encoding is 400" grep -q ' 400 ' <<<"$(raw "POST http://allowed.test:$http/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")"
check "user information in the URI is 400" grep -q ' 400 ' <<<"$(raw "GET http://a@allowed.test:$http/ HTTP/1.1\r\n\r\n")"
check "a head over 16 KiB is 431" test "$(code -H "X-Long: $(head -c 17000 /dev/zero | tr '\0' a)" "http://allowed.test:$http/")" = 431
check "a percent-encoded host is not a host name" grep -q ' 403 ' <<<"$(raw "GET http://allowed%%2etest:$http/ HTTP/1.1\r\n\r\n")"
: >"$work/requests.log"
raw "GET http://allowed.test:$http/first HTTP/1.1\r\n\r\nGET http://allowed.test:$http/second HTTP/1.1\r\nHost: denied.test\r\n\r\n" >/dev/null
check "a second request pipelined on one connection does not reach the server" test "$(cat "$work/requests.log")" = "GET /first HTTP/1.1"
whole() { inside bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf '$1' >&3; timeout 5 cat <&3" 2>/dev/null; }
sum5=$(printf hello | sha256sum | cut -d' ' -f1)
check "Connection naming Content-Length does not take the body's framing away" grep -qF "got 5 bytes sha256 $sum5" \
    <<<"$(whole "POST http://allowed.test:$http/post HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")"
check "... nor naming Transfer-Encoding" grep -qF "got 5 bytes sha256 $sum5" \
    <<<"$(whole "POST http://allowed.test:$http/post HTTP/1.1\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")"

echo "No other way out"
check "without the proxy, the host's server on 127.0.0.1 is not there" test "$(inside curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/")" = 000
address=$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')
if [ -n "$address" ]; then
    out=$(inside curl -sS -m 3 "http://$address:$http/" 2>&1)
    check "the host's own address ($address) has no route" grep -qi 'unreachable\|resolve\|connect' <<<"$out"
fi
check "the namespace has loopback only" test "$(inside ip -o link | wc -l)" = 1
check "no DNS inside: allowed.test does not resolve there" test "$(inside curl -s -m 5 -o /dev/null -w '%{http_code}' "http://allowed.test:$http/")" = 000

echo "Policy changes (SIGHUP)"
printf 'allowed.test\n' >"$work/policy"
kill -HUP "$proxy"
check "the new policy is in force" state_is "['policyEntries']" 1
out=$(proxied "http://allowed.test:$http/")
check "an allowed name resolving to loopback is refused when loopback is not listed" grep -qF 'it resolves to 127.0.0.1, which is not public and not in the allowed hosts' <<<"$out"
check "... logged" log_has allowed.test "$http" 'resolves to 127.0.0.1'
check "... over CONNECT too" test "$(connect_code "https://allowed.test:$https/")" = 403
check "... and the address itself is refused" test "$(code "http://127.0.0.1:$http/")" = 403
printf 'wire.test\n' >"$work/policy"
kill -HUP "$proxy"
check "a policy naming wire.test is in force" state_is "['policyEntries']" 1
out=$(proxied "http://wire.test/")
check "a name resolving to Azure's WireServer is refused, nothing sent" grep -qF 'it resolves to 168.63.129.16, which is not public and not in the allowed hosts' <<<"$out"
printf '*.test:%s\n127.0.0.0/8:%s\n' "$http" "$http" >"$work/policy"
kill -HUP "$proxy"
check "the next policy is in force" state_is "['policyEntries']" 2
check "*.test:PORT allows denied.test on that port" test "$(code "http://denied.test:$http/")" = 200
check "... but not another port" test "$(connect_code "https://denied.test:$https/")" = 403
check "... logged as the port" log_has denied.test "$https" 'this port is not allowed for the host'
printf 'allowed.test\n10.0.0.0/33\n' >"$work/policy"
kill -HUP "$proxy"
sleep 0.5
check "a policy with a bad line is refused and the one in force kept" test "$(code "http://denied.test:$http/")" = 200
check "... saying which line" grep -qF "policy:2: the prefix length is too long (the policy in force is kept)" "$work/proxy.err"
printf 'allowed.test\n*.pythonhosted.org\ngithub.com:443\n127.0.0.1\n[::1]:443\n' >"$work/policy"
kill -HUP "$proxy"
check "the issue's example entries load" state_is "['policyEntries']" 5

echo "Nothing inside can stop or replace it"
nsenter --net="/run/netns/$ns" sleep 300 & pids+=($!)
disown $! # its end by SIGKILL is the point, not news
sleep 0.2
netns_inode=$(stat -L -c %i "/run/netns/$ns")
killed=0
for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$netns_inode" ] || continue
    kill -9 "${p#/proc/}" 2>/dev/null && killed=$((killed + 1))
done
check "every process in the namespace killed ($killed)" test "$killed" -ge 1
inside unshare --pid --fork --mount-proc sh -c 'kill -9 -1' 2>/dev/null
check "root inside, in a PID namespace of its own, killing everything it sees does not reach it" kill -0 "$proxy"
check "the proxy is not in the namespace" test "$(stat -L -c %i "/proc/$proxy/ns/net")" != "$netns_inode"
check "it still serves" test "$(code "http://allowed.test:$http/")" = 200
out=$(inside python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', $port))" 2>&1)
check "its port cannot be taken inside" grep -q 'Address already in use' <<<"$out"
out=$(inside setpriv --inh-caps=-net_admin --bounding-set=-net_admin ss -K state listening "( sport = :$port )" 2>&1)
check "root inside without CAP_NET_ADMIN cannot destroy its socket (ss -K)" grep -q 'SOCK_DESTROY answers: Operation not permitted' <<<"$out"
check "... and it still serves" test "$(code "http://allowed.test:$http/")" = 200
check "it has no capabilities left" grep -q '^CapEff:[[:space:]]*0*$' "/proc/$proxy/status"
check "it runs with no_new_privs" grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$proxy/status"

echo "Many at once"
: >"$work/codes"
seq 50 | inside xargs -P 50 -I{} sh -c "curl -s -m 20 -o /dev/null -w '%{http_code}\n' -x http://127.0.0.1:$port --cacert $work/cert.pem \
    \$( [ \$(({} % 2)) = 0 ] && echo http://allowed.test:$http/{} || echo https://allowed.test:$https/{} )" >>"$work/codes"
check "50 parallel requests, half HTTPS, all 200" test "$(grep -c '^200$' "$work/codes")" = 50
check "none left active" state_is "['active']" 0

echo "Counters and log"
refusals=$(wc -l <"$work/refused.log")
check "one log line a refusal ($refusals), each with time, host, port and reason" \
    python3 -c "
import json, re, sys
lines = [json.loads(l) for l in open('$work/refused.log')]
assert all(re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', l['time']) and l['host'] and 0 < l['port'] < 65536 and l['reason'] for l in lines)
assert json.load(open('$work/state.json'))['refused'] == len(lines)"
allowed=$(state "['allowed']")
per_host=$(state "['hosts']")
check "allowed connections counted ($allowed)" test "$allowed" = 66
check "... by host and port" python3 -c "
h = $per_host
assert h['allowed.test:$http'] == 34 and h['allowed.test:$https'] == 29 and h['denied.test:$http'] == 2 and h['127.0.0.1:$http'] == 1, h"

echo "Another user, a namespace by descriptor, a port of the kernel's choice, a connection limit, a watched process"
mkdir "$work/nobody" && chown 65534:65534 "$work/nobody"
printf 'allowed.test\n127.0.0.1\n' >"$work/nobody/policy"
sleep 300 & watched=$!
pids+=("$watched")
unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$work/hosts" \
    "$proxy_bin" --netns-fd 3 --port 0 --policy "$work/nobody/policy" --log "$work/nobody/log" --state "$work/nobody/state.json" \
    --user 65534:65534 --max-connections 2 --watch-pid "$watched" 2>>"$work/proxy.err" 3<"/run/netns/$ns" &
second=$!
pids+=("$second")
for _ in $(seq 50); do [ -s "$work/nobody/state.json" ] && break; sleep 0.1; done
port2=$(python3 -c "import json; print(json.load(open('$work/nobody/state.json'))['listening'].split(':')[1])")
check "it runs as 65534" grep -q '^Uid:[[:space:]]*65534' "/proc/$second/status"
check "it serves on the port the kernel chose ($port2)" test "$(inside curl -s -m 10 -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$port2" "http://allowed.test:$http/")" = 200
check "it refuses as the other" test "$(inside curl -s -m 10 -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$port2" "http://denied.test:$http/")" = 403
check "... and logs as the other" test "$(wc -l <"$work/nobody/log")" = 1
out=$(inside bash -c "exec 3<>/dev/tcp/127.0.0.1/$port2 4<>/dev/tcp/127.0.0.1/$port2; sleep 0.3
    curl -s -m 10 -w ' %{http_code}' -x http://127.0.0.1:$port2 http://allowed.test:$http/")
check "past --max-connections a connection is answered 503" test "$out" = "The sandbox's egress proxy is too busy.
 503"
check "... and counted" python3 -c "import json; assert json.load(open('$work/nobody/state.json'))['busy'] == 1" 
kill "$watched"
for _ in $(seq 30); do kill -0 "$second" 2>/dev/null || break; sleep 0.1; done
check "it ends when the watched process does" test ! -d "/proc/$second/fd"

echo "Root inside with CAP_NET_ADMIN"
port=3129
mkdir "$work/third" && cp "$work/policy" "$work/third/"
start_proxy "$work/third"
inside ss -K state listening "( sport = :$port )" >/dev/null 2>&1
wait "$proxy"
check "can destroy the listening socket (SOCK_DESTROY): the proxy then ends with status 3" test $? = 3
check "... saying why" grep -q 'the listening socket was destroyed' "$work/proxy.err"
port=3128 proxy=$main_proxy

echo "The host's own public address"
# A host with a public address of its own reaches itself there, past the firewall that hides its
# services from the world. A namespace of the test's own plays that host: only loopback, with a
# public address on it; the proxy runs there and a server listens on all its addresses.
mkdir "$work/own" && echo secret >"$work/own/page"
ip netns add "$ns-own" && ip -n "$ns-own" link set lo up && ip -n "$ns-own" addr add 203.0.114.1/32 dev lo
nsenter --net="/run/netns/$ns-own" python3 -m http.server --bind 0.0.0.0 --directory "$work/own" "$http" >/dev/null 2>&1 & pids+=($!)
printf '127.0.0.1 localhost\n203.0.114.1 own.test\n' >"$work/own/hosts"
printf 'own.test\n' >"$work/own/policy"
nsenter --net="/run/netns/$ns-own" unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$work/own/hosts" \
    "$proxy_bin" --netns "/run/netns/$ns" --port 3130 --policy "$work/own/policy" --log "$work/own/log" --state "$work/own/state.json" 2>>"$work/own/err" &
own_proxy=$!
pids+=("$own_proxy")
for _ in $(seq 50); do [ -s "$work/own/state.json" ] && nsenter --net="/run/netns/$ns-own" curl -s -o /dev/null "http://127.0.0.1:$http/page" && break; sleep 0.1; done
own() { inside curl -s -m 10 -x http://127.0.0.1:3130 "http://own.test:$http/page"; }
check "an allowed name resolving to the host's own public address is refused" grep -qF "it resolves to 203.0.114.1, which is this host's own address" <<<"$(own)"
check "... and logged" grep -qF "this host's own address" "$work/own/log"
printf 'own.test\n203.0.114.1\n' >"$work/own/policy"
kill -HUP "$own_proxy"
sleep 0.5
check "... and reached when the address is listed as such" test "$(own)" = secret
kill -TERM "$own_proxy"

echo "SIGTERM"
kill -TERM "$proxy"
wait "$proxy"
check "the proxy exits 0 on SIGTERM" test $? = 0
check "nothing listens in the namespace any more" test -z "$(inside ss -Htln)"
check "it left its state, log and policy only" test "$(ls "$work" | grep -v -e '^nobody$' -e '^third$' -e '^own$' | tr '\n' ' ')" = \
    "agentsandbox-egress body cert.pem codes hosts key.pem policy proxy.err refused.log requests.log state.json "
check "the final state says nothing is active" state_is "['active']" 0
check "it wrote nothing to standard error but the refused policy and the destroyed socket" \
    test "$(grep -vc -e 'policy in force is kept' -e 'listening socket was destroyed' "$work/proxy.err")" = 0

echo "Detached (--detach), in cgroups of its own (--cgroup)"
# How the module starts it: the caller waits for the pid, and the proxy keeps nothing of the caller's.
mkdir "$work/detach" && printf '127.0.0.1\n' >"$work/detach/policy"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    roots=(/sys/fs/cgroup) # cgroup v2 alone: one hierarchy
else # v1 (or hybrid): one dir in each of two hierarchies, so --cgroup is given twice
    roots=()
    for c in pids freezer; do
        r=$(findmnt -n -t cgroup -o TARGET,OPTIONS | awk -v c="$c" '$2 ~ "(^|,)" c "(,|$)" { print $1; exit }')
        [ -n "$r" ] && roots+=("$r")
    done
fi
cgroup_args=()
for r in "${roots[@]}"; do
    dir="$r/agentsandbox-egress-test-$$"
    mkdir "$dir" && cgroups+=("$dir") && cgroup_args+=(--cgroup "$dir")
done
is() { [ "$1" = "$2" ] || { echo "got '$1', not '$2'"; return 1; }; }
# Its output as $(...) takes it: past 10 s, cat is ended, so a pipe the proxy kept cannot hang the test.
detached() {
    { "$proxy_bin" --netns "/run/netns/$ns" --port 0 --log "$work/detach/log" --state "$work/detach/state.json" \
        --detach "$work/detach/err" "$@"; echo "exit $?"; } 2>&1 | timeout 10 cat
}
started=$(date +%s%N)
out=$(detached --policy "$work/detach/policy" "${cgroup_args[@]}")
elapsed=$((($(date +%s%N) - started) / 1000000))
state_then=$(cat "$work/detach/state.json" 2>/dev/null)
daemon=$(head -1 <<<"$out")
[[ "$daemon" =~ ^[0-9]+$ ]] && pids+=("$daemon")
check "it returns at once (${elapsed} ms: the caller's pipes are closed)" test "$elapsed" -lt 5000
check "... with status 0 and the pid of a running process" is "$(tail -1 <<<"$out") $([ -d "/proc/$daemon" ] && echo running)" "exit 0 running"
check "its state file was there when it returned, naming that pid" grep -qF "{\"pid\":$daemon," <<<"$state_then"
check "it leads a session of its own, not the caller's ($(ps -o sid= -p $$ | tr -d ' '))" is "$(ps -o sid= -p "$daemon" | tr -d ' ')" "$daemon"
check "its standard input and output are /dev/null, its standard error the error file" \
    is "$(readlink "/proc/$daemon/fd/0") $(readlink "/proc/$daemon/fd/1") $(readlink "/proc/$daemon/fd/2")" "/dev/null /dev/null $work/detach/err"
for dir in "${cgroups[@]}"; do check "it is in $dir" grep -qx "$daemon" "$dir/cgroup.procs"; done
check "the test made a cgroup for it in each hierarchy (${#cgroups[@]})" test "${#cgroups[@]}" -ge 1
dport=$(python3 -c "import json; print(json.load(open('$work/detach/state.json'))['listening'].split(':')[1])" 2>/dev/null)
check "it serves" test "$(inside curl -s -m 10 -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$dport" "http://127.0.0.1:$http/")" = 200
kill -TERM "$daemon"
# Not the test's child: once it exits, whoever adopted it reaps it (a zombie until then).
for _ in $(seq 50); do [ ! -e "/proc/$daemon" ] || grep -q '^State:.*Z' "/proc/$daemon/status" 2>/dev/null && break; sleep 0.1; done
check "SIGTERM to the pid ends it" eval '[ ! -e "/proc/$daemon" ] || grep -q "^State:.*Z" "/proc/$daemon/status"'
check "... and its cgroups are empty" test -z "$(cat /dev/null "${cgroups[@]/%//cgroup.procs}" 2>/dev/null)"
check "... and it wrote nothing to the error file" test ! -s "$work/detach/err"
printf 'allowed.test\n10.0.0.0/33\n' >"$work/detach/bad"
out=$(detached --policy "$work/detach/bad")
check "a bad policy: the caller gets status 2 and the reason, and no pid" test "$out" = "agentsandbox-egress: $work/detach/bad:2: the prefix length is too long
exit 2"
out=$(detached --policy "$work/detach/policy" --cgroup "$work/detach/no-such-cgroup")
check "a cgroup it cannot join: status 2, naming it" grep -qF "$work/detach/no-such-cgroup/cgroup.procs" <<<"$out"
check "... with status 2" test "$(tail -1 <<<"$out")" = "exit 2"
out=$(detached --policy "$work/detach/policy" --user nobody)
check "a failure after the fork (--user not UID:GID): status 2, pointing at the error file" test "$out" = "agentsandbox-egress: the proxy ended before it was ready; see $work/detach/err
exit 2"
check "... which holds the reason" grep -qF -- '--user UID:GID' "$work/detach/err"
check "none of these left a proxy running" test -z "$(pgrep -f -- "--detach $work/detach/err")"

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

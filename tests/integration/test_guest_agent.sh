#!/usr/bin/env bash
# test_guest_agent.sh - the local executor's guest agent as a real process:
# `tdx-runner guest-agent` on a unix socket, driven with python3 (http.client
# over AF_UNIX) the way the dstack SDK talks to /var/run/dstack.sock. Checks the
# socket and file modes, Info / GetQuote / tappd shapes, 4xx answers to bad and
# over-long requests, the per-connection timeout, that `tdx-runner verify`
# accepts a GetQuote answer against BOX_DIR/root.der + collateral.json (and
# refuses a wrong REPORTDATA), SIGTERM removing the socket, and a restart
# keeping the box identity.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 0; }
tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/agent.log" ] && cat "$tmp/agent.log"; exit 1; }

box=$tmp/box
sock=$box/dstack.sock
app_id=0123456789abcdef0123456789abcdef01234567
inst_id=fedcba9876543210fedcba9876543210fedcba98
printf '{"manifest_version":2,"name":"integration-box","runner":"docker-compose"}' >"$tmp/compose.json"
compose_hash=$(sha256sum "$tmp/compose.json" | cut -d' ' -f1)

start_agent() { # start_agent [extra flags...]
	"$bin" guest-agent --socket "$sock" --box-dir "$box" --log-level debug "$@" >>"$tmp/agent.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		[ -S "$sock" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "guest-agent exited at start"
		sleep 0.1
	done
	fail "socket $sock did not appear"
}
stop_agent() {
	kill -TERM "$pid"
	set +e; wait "$pid"; local rc=$?; set -e
	pid=
	[ "$rc" -eq 0 ] || fail "guest-agent exited $rc after SIGTERM"
	[ ! -e "$sock" ] || fail "socket left behind after SIGTERM"
}

# usage errors
set +e
"$bin" guest-agent --box-dir "$tmp/x" >/dev/null 2>&1; rc1=$?
"$bin" guest-agent --socket "$tmp/s" --box-dir "$tmp/x" --app-id 12 >/dev/null 2>&1; rc2=$?
touch "$tmp/plainfile"
"$bin" guest-agent --socket "$tmp/plainfile" --box-dir "$tmp/y" >/dev/null 2>&1; rc3=$?
set -e
[ "$rc1" -eq 2 ] && [ "$rc2" -eq 2 ] && [ "$rc3" -eq 2 ] || fail "usage errors exit $rc1 $rc2 $rc3, want 2"
[ -f "$tmp/plainfile" ] || fail "a non-socket file at --socket was removed"
echo "ok: usage errors"

start_agent --app-compose "$tmp/compose.json" --app-id "$app_id" --instance-id "$inst_id"
[ "$(stat -c %a "$sock")" = 660 ] || fail "socket mode $(stat -c %a "$sock"), want 660"
# a second agent for the same socket is refused and leaves the live one's files alone
root_sum=$(sha256sum "$box/root.der")
set +e
"$bin" guest-agent --socket "$sock" --box-dir "$box" >"$tmp/out" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "another process is serving" "$tmp/out" || fail "a second agent took a live socket"
[ -S "$sock" ] || fail "a second agent removed the live socket"
[ "$(sha256sum "$box/root.der")" = "$root_sum" ] || fail "a refused second agent rewrote root.der"
[ "$(stat -c %a "$box/root.der")" = 644 ] || fail "root.der mode"
[ "$(stat -c %a "$box/collateral.json")" = 644 ] || fail "collateral.json mode"

set +e
python3 - "$sock" "$tmp" "$app_id" "$inst_id" "$compose_hash" <<'PY'
import http.client, json, socket, sys, time
sock_path, tmp, app_id, inst_id, compose_hash = sys.argv[1:6]

class UnixConn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=10)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(sock_path)

def post(path, body):
    c = UnixConn()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    c.close()
    assert r.getheader("Content-Type") == "application/json", r.getheaders()
    return r.status, json.loads(out)

def raw(data, wait=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(wait)
    s.connect(sock_path)
    s.sendall(data)
    buf = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    return buf

# Info: the dstack shape, tcb_info as a JSON string
st, info = post("/Info", {})
assert st == 200, (st, info)
for k in ("app_id", "instance_id", "app_cert", "tcb_info", "app_name", "device_id", "key_provider_info",
          "vm_config", "compose_hash", "os_image_hash"):
    assert k in info, "Info lacks " + k
assert info["app_id"] == app_id and info["instance_id"] == inst_id, info
assert info["compose_hash"] == compose_hash and info["app_name"] == "integration-box"
assert isinstance(info["tcb_info"], str)
tcb = json.loads(info["tcb_info"])
for k in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "event_log", "app_compose", "os_image_hash",
          "compose_hash"):
    assert k in tcb, "tcb_info lacks " + k
ev = {e["event"]: e["event_payload"] for e in tcb["event_log"] if e["imr"] == 3}
assert ev["app-id"] == app_id and ev["instance-id"] == inst_id and ev["compose-hash"] == compose_hash, ev
json.dump(info, open(tmp + "/info.json", "w"))

# GetQuote: fresh quote over exactly the requested REPORTDATA
rd = "c0ffee" * 10
st, q = post("/GetQuote", {"report_data": rd})
assert st == 200, (st, q)
assert set(("quote", "event_log", "vm_config")) <= set(q), q.keys()
assert isinstance(q["event_log"], str) and isinstance(json.loads(q["event_log"]), list)
quote = bytes.fromhex(q["quote"])
# TD 1.0 v4 quote: REPORTDATA at 48 + 520
assert quote[568:568 + 64] == bytes.fromhex(rd) + bytes(64 - len(rd) // 2), "REPORTDATA not as requested"
json.dump(q, open(tmp + "/getquote.json", "w"))
st, q2 = post("/GetQuote", {"report_data": rd})
assert st == 200 and q2["quote"] != q["quote"], "second quote is not freshly signed"

# legacy tappd forms
st, t = post("/prpc/Tappd.Info", {})
assert st == 200 and isinstance(t["tcb_info"], str)
st, t = post("/prpc/Tappd.TdxQuote?json", {"report_data": "00ff", "hash_algorithm": "raw"})
assert st == 200 and "quote" in t and "event_log" in t, t

# errors: JSON bodies with 4xx
st, e = post("/GetQuote", {"report_data": "00" * 65})
assert st == 400 and "error" in e, (st, e)
st, e = post("/GetQuote", {"report_data": "xyz"})
assert st == 400 and "error" in e
st, e = post("/GetQuote", b"{not json")
assert st == 400 and "error" in e
st, e = post("/Nope", {})
assert st == 404 and "error" in e
r = raw(b"BLAH\r\n\r\n")
assert r.startswith(b"HTTP/1.1 400 "), r[:40]
r = raw(b"POST /GetQuote HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
assert r.startswith(b"HTTP/1.1 413 "), r[:40]
r = raw(b"POST /GetQuote HTTP/1.1\r\nX: " + b"a" * 20000)
assert r.startswith(b"HTTP/1.1 413 "), r[:40]
# a client that vanishes mid-request does not hurt the next one
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
s.sendall(b"POST /GetQuote HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
s.close()
st, _ = post("/Info", {})
assert st == 200
# a stalled client is cut off by the per-connection deadline (5 s)
t0 = time.monotonic()
r = raw(b"POST /GetQuote HTTP/1.1\r\nContent-Length: 10\r\n\r\n{", wait=15)
took = time.monotonic() - t0
assert r.startswith(b"HTTP/1.1 408 ") and 3 < took < 12, (r[:40], took)
print("ok: Info, GetQuote, tappd, 4xx answers, timeouts")
PY
rc=$?
set -e
[ "$rc" -eq 0 ] || fail "API checks"

expect_rc() { # expect_rc WANT CMD...
	local want=$1; shift
	set +e; "$@" >"$tmp/out" 2>&1; local rc=$?; set -e
	[ "$rc" -eq "$want" ] || { cat "$tmp/out"; fail "'$*' exited $rc, want $want"; }
}
rd_full=$(printf 'c0ffee%.0s' $(seq 10))$(printf '0%.0s' $(seq 68))
[ ${#rd_full} -eq 128 ] || fail "test bug: report data is ${#rd_full} digits"
expect_rc 0 "$bin" verify --event-log "$tmp/getquote.json" --collateral "$box/collateral.json" \
	--root "$box/root.der" --allow-simulated --expect-report-data "$rd_full" \
	--expect-app-id "$app_id" --expect-compose-hash "$compose_hash" --app-compose "$tmp/compose.json"
wrong=${rd_full:0:126}01
expect_rc 1 "$bin" verify --event-log "$tmp/getquote.json" --collateral "$box/collateral.json" \
	--root "$box/root.der" --allow-simulated --expect-report-data "$wrong"
expect_rc 1 "$bin" verify --event-log "$tmp/getquote.json" --collateral "$box/collateral.json" \
	--root "$box/root.der" --expect-report-data "$rd_full"
# Info carries its quote in the RA-TLS app certificate
expect_rc 0 "$bin" verify --event-log "$tmp/info.json" --collateral "$box/collateral.json" \
	--root "$box/root.der" --allow-simulated --expect-app-id "$app_id"
echo "ok: tdx-runner verify accepts the GetQuote answer, refuses a wrong REPORTDATA"

stop_agent
echo "ok: SIGTERM stops the agent and removes the socket"

# restart without flags: same identity; a contradicting flag is refused
start_agent
python3 - "$sock" "$app_id" "$inst_id" "$compose_hash" <<'PY'
import json, socket, sys
sock_path, app_id, inst_id, compose_hash = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sock_path)
s.sendall(b"POST /Info HTTP/1.1\r\nHost: dstack\r\nContent-Length: 2\r\n\r\n{}")
buf = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    buf += b
head, body = buf.split(b"\r\n\r\n", 1)
assert head.startswith(b"HTTP/1.1 200 "), head
info = json.loads(body)
assert (info["app_id"], info["instance_id"], info["compose_hash"]) == (app_id, inst_id, compose_hash), info
PY
stop_agent
set +e
"$bin" guest-agent --socket "$sock" --box-dir "$box" --app-id ffffffffffffffffffffffffffffffffffffffff \
	>"$tmp/out" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a contradicting --app-id exited $rc, want 2"
grep -q "never changes identity" "$tmp/out" || fail "no reason given for refusing the new app id"
echo "ok: restart keeps app id, instance id and compose hash"

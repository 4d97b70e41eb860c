#!/usr/bin/env bash
# test_provenance.sh - provenance end to end on the local executor (real sshd,
# guest agent, rsync): `tdx-runner run --subject` hashes the outputs in the box
# and binds them into a second quote; `tdx-runner verify BUNDLE --subject FILE`
# accepts the file as built and refuses, naming the step, a changed file, a
# changed statement, a changed end quote and a bundle without an end part.
# Subject paths that leave the work directory are refused before any lease.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
for t in /usr/sbin/sshd rsync ssh-keygen python3 git sha256sum; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "SKIP: $t is not installed"; exit 0; }
done
tmp=$(mktemp -d /tmp/tdxr-prov-XXXXXX)
state=$tmp/s
cleanup() { "$bin" reap --config "$tmp/cfg.json" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
printf '{"state_dir": "%s"}' "$state" >"$tmp/cfg.json"
box_procs() { grep -ls "$state/boxe[s]/" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | wc -l; }
no_leftovers() {
	[ "$(box_procs)" -eq 0 ] || fail "box processes left after $1"
	[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] || fail "lease claim left after $1"
}
# verify_fails STEP BUNDLE ARGS...: exit 1 and the error names STEP.
verify_fails() {
	local step=$1 b=$2 rc
	shift 2
	"$bin" verify --allow-simulated "$b" "$@" >"$tmp/v.out" 2>&1 && rc=0 || rc=$?
	[ "$rc" -eq 1 ] || { cat "$tmp/v.out"; fail "verify exit $rc, want 1 (expected $step)"; }
	grep -q "^error: $step: " "$tmp/v.out" || { cat "$tmp/v.out"; fail "the refusal does not name $step"; }
	echo "   refused: $(grep '^error:' "$tmp/v.out" | cut -c1-150)"
}

repo=$tmp/repo
mkdir -p "$repo"
cd "$repo"
git init -q
git -c user.email=t@example.com -c user.name=t commit -q --allow-empty -m init
git remote add origin "https://user:s3cret-token@example.com/owner/repo.git"
printf 'src\n' >src.txt

# 1. run --subject: the statement names the output; verify --subject accepts it
"$bin" run --config "$tmp/cfg.json" --subject out.bin --subject "dir/b.txt" --artifacts out.bin \
	--artifacts dir --artifacts-dir "$tmp/art" --bundle "$tmp/b.json" \
	-- sh -c 'echo x > out.bin; mkdir -p dir; echo y > dir/b.txt' 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/err"; fail "run --subject exit $rc"; }
grep -q "end attested: 2 subject(s)" "$tmp/err" || { cat "$tmp/err"; fail "no end attestation line"; }
no_leftovers "run --subject"
[ "$(cat "$tmp/art/out.bin")" = x ] || fail "artifact out.bin not copied back"
"$bin" verify --allow-simulated "$tmp/b.json" --subject "$tmp/art/out.bin" --subject "$tmp/art/dir/b.txt" \
	>"$tmp/v.out" || { cat "$tmp/v.out"; fail "the bundle with its subjects does not verify"; }
for s in end_quote statement_binding same_cvm statement statement_predicate subject; do
	grep -Eq "^  pass +$s " "$tmp/v.out" || { cat "$tmp/v.out"; fail "step $s did not pass"; }
done
grep -q "$(sha256sum "$tmp/art/out.bin" | cut -c1-64)  out.bin" "$tmp/v.out" || fail "subjects not listed"
"$bin" verify --allow-simulated --json "$tmp/b.json" --subject "$tmp/art/out.bin" >"$tmp/v.json"
python3 - "$tmp/v.json" "$tmp/b.json" "$(sha256sum "$tmp/art/out.bin" | cut -c1-64)" <<'EOF'
import base64, hashlib, json, sys
v = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2])); want = sys.argv[3]
assert v["ok"] and v["end"]["ok"], v["error"]
st = base64.b64decode(b["end"]["statement"], validate=True)
assert v["statement"]["sha256"] == hashlib.sha256(st).hexdigest()
rd = hashlib.sha512(b"tdx-runner/statement/v1\0" + st).hexdigest()
assert v["statement"]["report_data"] == rd == v["end"]["report_data"], "REPORTDATA does not bind the statement"
assert {"name": "out.bin", "sha256": want} in v["statement"]["subjects"], v["statement"]["subjects"]
s = json.loads(st)
assert s["_type"] == "https://in-toto.io/Statement/v1"
assert s["predicateType"] == "https://tdx-runner.dev/attestation/job/v1"
p = s["predicate"]
assert p["lease"]["id"] == b["meta"]["lease_id"] and p["start"]["nonce"] == b["meta"]["nonce"]
assert p["repository"] == "https://example.com/owner/repo.git", p["repository"]   # no credentials
assert "s3cret" not in open(sys.argv[2]).read(), "a credential reached the bundle"
assert p["exit_code"] == 0 and p["ci"]["system"] == "cli" and len(p["commit"]) == 40
assert st == json.dumps(s, sort_keys=True, separators=(",", ":")).encode(), "statement is not canonical"
# the start quote and the end quote: same TD, RTMR3 may only have grown
assert v["mrtd"] == v["end"]["mrtd"] and v["instance_id"] == v["end"]["instance_id"]
EOF
"$bin" verify --allow-simulated "$tmp/b.json" --statement-out "$tmp/statement.json" >/dev/null || fail "--statement-out failed"
[ "$(sha256sum <"$tmp/statement.json" | cut -c1-64)" = "$(python3 -c "import json; print(json.load(open('$tmp/v.json'))['statement']['sha256'])")" ] \
	|| fail "--statement-out did not write the bound statement's bytes"
echo "ok: run --subject, verify --subject, --json statement digest and subjects, --statement-out"

# 2. refusals, each naming its step
"$bin" verify "$tmp/b.json" --subject "$tmp/art/out.bin" >"$tmp/v.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 1 ] && grep -q "^error: root: " "$tmp/v.out" || fail "simulated bundle not refused at root without --allow-simulated"
cp "$tmp/art/out.bin" "$tmp/changed.bin"
printf 'x \n' >"$tmp/changed.bin"  # one byte more than out.bin
verify_fails subject "$tmp/b.json" --subject "$tmp/changed.bin"
verify_fails subject "$tmp/b.json" --subject "$tmp/art/out.bin" --subject "$tmp/changed.bin"
python3 - "$tmp/b.json" "$tmp" <<'EOF'
import base64, json, sys
b = json.load(open(sys.argv[1])); d = sys.argv[2]
st = bytearray(base64.b64decode(b["end"]["statement"]))
st[len(st) // 2] ^= 1
b2 = json.loads(json.dumps(b)); b2["end"]["statement"] = base64.b64encode(bytes(st)).decode()
json.dump(b2, open(d + "/bad-statement.json", "w"))
q = b["end"]["quote"]; i = len(q) // 3
b3 = json.loads(json.dumps(b)); b3["end"]["quote"] = q[:i] + ("0" if q[i] != "0" else "1") + q[i + 1:]
json.dump(b3, open(d + "/bad-end-quote.json", "w"))
b4 = json.loads(json.dumps(b)); b4["end"]["statement"] = "%%%"
json.dump(b4, open(d + "/bad-base64.json", "w"))
b5 = json.loads(json.dumps(b)); b5["meta"]["lease_id"] = "l-someone-else"
json.dump(b5, open(d + "/other-lease.json", "w"))
EOF
verify_fails statement_binding "$tmp/bad-statement.json" --subject "$tmp/art/out.bin"
verify_fails end_quote "$tmp/bad-end-quote.json" --subject "$tmp/art/out.bin"
verify_fails statement_binding "$tmp/bad-base64.json"
verify_fails statement_predicate "$tmp/other-lease.json"
echo "ok: a changed file, statement, end quote or meta is refused naming the step"

# 3. a bundle without an end part: verifies as before, but not with --subject
"$bin" run --config "$tmp/cfg.json" --bundle "$tmp/start.json" -- true 2>/dev/null || fail "plain run failed"
python3 -c "import json; assert 'end' not in json.load(open('$tmp/start.json'))"
"$bin" verify --allow-simulated "$tmp/start.json" >/dev/null || fail "a bundle without an end part no longer verifies"
verify_fails subject "$tmp/start.json" --subject "$tmp/art/out.bin"
"$bin" verify --allow-simulated "$tmp/start.json" --statement-out "$tmp/none.json" >/dev/null 2>&1 && fail "--statement-out without an end part succeeded"
[ ! -e "$tmp/none.json" ] || fail "--statement-out wrote a file for a bundle without an end part"
"$bin" verify --quote /dev/null --collateral /dev/null --subject "$tmp/art/out.bin" >/dev/null 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 2 ] || fail "--subject without a BUNDLE: exit $rc, want 2"
no_leftovers "plain run"
echo "ok: no end part: verifies as before; --subject refused with the step named"

# 4. bad subject lists are refused before any box is leased; a missing output fails the run
for bad in /etc/passwd ../x "a/../../b" ""; do
	"$bin" run --config "$tmp/cfg.json" --subject "$bad" -- true 2>"$tmp/err" && rc=0 || rc=$?
	[ "$rc" -eq 2 ] || { cat "$tmp/err"; fail "--subject '$bad': exit $rc, want 2"; }
done
[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] && [ -z "$(ls -A "$state/boxes" 2>/dev/null)" ] || fail "a refused --subject leased a box"
"$bin" run --config "$tmp/cfg.json" --bundle "$tmp/m.json" --subject missing.bin -- true 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 125 ] || { cat "$tmp/err"; fail "missing subject: exit $rc, want 125"; }
grep -q "provenance: hashing the subjects in the box failed.*not a regular file: missing.bin" "$tmp/err" || { cat "$tmp/err"; fail "the failure does not name the missing subject"; }
"$bin" run --config "$tmp/cfg.json" --subject missing.bin -- sh -c 'exit 3' 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 3 ] || { cat "$tmp/err"; fail "a failed command's status was replaced: exit $rc, want 3"; }
no_leftovers "failed provenance"
echo "ok: bad subject paths refused before leasing; a missing output fails the run and still releases"

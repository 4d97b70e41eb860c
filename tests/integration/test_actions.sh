#!/usr/bin/env bash
# test_actions.sh - the composite GitHub Actions in actions/ (verify,
# attach-to-release), checked and EXECUTED without GitHub: actions_runner.py
# loads each action.yml (subset YAML loader, cross-checked with PyYAML when it is
# installed), renders the ${{ }} expressions and runs every bash step with the
# runner's file-command contract (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, ...).
# actions/verify runs the real tdx-runner against a bundle from `tdx-runner
# simulate`: a good bundle passes, a tampered one fails naming the verification
# step, outputs and the job summary are written. actions/attach-to-release runs
# against a stand-in `gh` that keeps a fake release on disk. Nothing here needs
# the network; the build-from-source path of actions/verify runs only with
# TDXR_ACTIONS_BUILD=1 (it compiles tdx-runner: minutes, not seconds).
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
runner_py="$src/tests/integration/actions_runner.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is not installed"; exit 0; }
# the interpreter itself, not a version-manager shim (a shim costs ~0.2 s a call)
mkdir -p "$tmp/py"
ln -s "$(python3 -c 'import sys; print(sys.executable)')" "$tmp/py/python3"
export PATH="$tmp/py:$PATH"

export GITHUB_WORKSPACE="$tmp/ws" RUNNER_TEMP="$tmp/runner-temp"
export GITHUB_REPOSITORY=owner/project GITHUB_RUN_ID=4242 GITHUB_EVENT_NAME=push
export GITHUB_REF=refs/heads/main GITHUB_REF_NAME=main GITHUB_REF_TYPE=branch
mkdir -p "$GITHUB_WORKSPACE" "$RUNNER_TEMP"
cd "$GITHUB_WORKSPACE"

# act NAME ACTION ARGS... - runs an action; result in $r/NAME.json, log in
# $r/NAME.log, job summary in $r/NAME.md; sets $rc
r="$tmp/results"
mkdir -p "$r"
act() {
	local name=$1 dir=$2
	shift 2
	: >"$r/$name.md"
	set +e
	GITHUB_STEP_SUMMARY="$r/$name.md" python3 -I "$runner_py" "$src/actions/$dir" \
		--result "$r/$name.json" --result-dir "$r/$name.d" "$@" >"$r/$name.log" 2>&1
	rc=$?
	set -e
	[ -f "$r/$name.json" ] || { cat "$r/$name.log"; fail "$name: the runner wrote no result"; }
}
# get NAME KEY - a value of a result: outcome, failed_step, outputs.KEY
get() {
	[ -f "$r/$1.d/$2" ] || fail "$1: no $2 in the result"
	cat "$r/$1.d/$2"
}
want() { # want NAME PATH VALUE
	local got
	got=$(get "$1" "$2")
	[ "$got" = "$3" ] || { cat "$r/$1.log"; fail "$1: $2 is '$got', want '$3'"; }
}
has() { # has FILE TEXT
	grep -qF -- "$2" "$1" || { cat "$1"; fail "$1 does not contain '$2'"; }
}

# --- static checks: both actions load, and every step keeps the rules
for a in verify attach-to-release; do
	python3 -I "$runner_py" "$src/actions/$a" --check-only --result "$tmp/load.json" ||
		fail "actions/$a/action.yml does not load"
done
python3 -I -B - "$src" "$runner_py" <<'PY'
import importlib.util, os, re, sys
src, runner = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("actions_runner", runner)
ar = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ar)
for name in ("verify", "attach-to-release"):
    d = os.path.join(src, "actions", name)
    doc = ar.load_action(os.path.join(d, "action.yml"))
    assert doc["runs"]["using"] == "composite", name
    for st in doc["runs"]["steps"]:
        label = st.get("name", "?")
        if "run" in st:
            assert st.get("shell") == "bash", "%s/%s: no shell: bash" % (name, label)
            assert "${{" not in st["run"], "%s/%s: ${{ }} in run:" % (name, label)
        else:
            assert re.match(r"^[^@]+@[0-9a-f]{40}$", st["uses"]), "%s/%s: not pinned" % (name, label)
    readme = open(os.path.join(d, "README.md")).read()
    assert re.search(r"- uses: [\w.-]+/tdx-runner/actions/%s@(?:[0-9a-f]{40}|<[a-z-]+>)\n\s+with: \{ ?[\w-]+: " % re.escape(name), readme), \
        "%s README: no '- uses: OWNER/tdx-runner/actions/%s@<sha>' example" % (name, name)
    assert "permissions" in readme.lower(), "%s README: no permissions" % name
    for k in list(doc.get("inputs", {})) + list(doc.get("outputs", {})):
        assert "`%s`" % k in readme, "%s README does not document `%s`" % (name, k)
print("ok: both action.yml files load; run steps use bash, no ${{ }} in scripts, uses pinned; READMEs complete")
PY
# the build-from-source package list covers what install-deps.sh says a build needs
deps="$src/packaging/install-deps.sh"
if grep -q '^ *# build' "$deps"; then
	for p in $(sed -n '/^ *# build/,/^ *#/{/^ *#/d;p}' "$deps"); do
		case $p in clang | libclang-rt-*) continue ;; esac # fuzzing only
		grep -qw -- "$p" "$src/actions/verify/action.yml" ||
			fail "actions/verify builds without $p (in install-deps.sh's build list)"
	done
	echo "ok: actions/verify installs every build package of install-deps.sh"
else
	echo "SKIP: install-deps.sh has no '# build' list to compare with"
fi

# --- actions/verify against real bundles
"$bin" simulate --out "$tmp/good.json" >/dev/null
python3 - "$tmp/good.json" "$tmp/tampered.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
q = b["quote"]
i = (48 + 136) * 2   # first hex digit of MRTD in the TD report body
b["quote"] = q[:i] + ("1" if q[i] == "0" else "0") + q[i + 1:]
json.dump(b, open(sys.argv[2], "w"))
PY
"$bin" verify --allow-simulated --json "$tmp/good.json" >"$tmp/good.verdict" ||
	fail "the simulated bundle does not verify with tdx-runner itself"
python3 -I -c '
import json, os, sys
os.mkdir(sys.argv[2])
for k, v in json.load(open(sys.argv[1])).items():
    if isinstance(v, str):
        open(os.path.join(sys.argv[2], k), "w").write(v)' "$tmp/good.verdict" "$tmp/expected"
expected() { cat "$tmp/expected/$1"; }
mrtd=$(expected mrtd)
app_id=$(expected app_id)
V=(--input "tdx-runner-path=$bin")

act good verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true
[ "$rc" -eq 0 ] || { cat "$r/good.log"; fail "good bundle: the action failed"; }
want good outcome success
want good outputs.ok true
want good outputs.status UpToDate
want good outputs.simulated true
want good outputs.failed-step ""
want good outputs.mrtd "$mrtd"
want good outputs.app-id "$app_id"
for k in compose_hash instance_id rtmr0 rtmr1 rtmr2 rtmr3 report_data; do
	want good "outputs.${k//_/-}" "$(expected "$k")"
done
[ -f "$(get good outputs.verdict)" ] || fail "good: outputs.verdict is not a file"
for row in "passed" "| TCB status | UpToDate" "| app id | \`$app_id\`" "| MRTD | \`$mrtd\`" "| RTMR3 |" \
	"| statement SHA-256 | - |" "SIMULATED root of trust" "| quote_signature | pass |"; do
	has "$r/good.md" "$row"
done
has "$r/good.log" "::warning title=tdx-runner verify::"
echo "ok: verify - a good simulated bundle passes, outputs and summary written"

act nosim verify "${V[@]}" --input "bundle=$tmp/good.json"
[ "$rc" -ne 0 ] || fail "a simulated bundle passed without allow-simulated"
want nosim outputs.ok false
want nosim outputs.failed-step root
want nosim failed_step "tdx-runner: verify"
has "$r/nosim.log" "::error title=tdx-runner verify::verification failed at step 'root'"
has "$r/nosim.md" "failed"
has "$r/nosim.md" "<code>root</code>"
echo "ok: verify - a simulated root is refused unless allow-simulated"

act tampered verify "${V[@]}" --input "bundle=$tmp/tampered.json" --input allow-simulated=true
[ "$rc" -ne 0 ] || fail "a tampered bundle passed"
want tampered outputs.ok false
want tampered outputs.failed-step quote_signature
want tampered failed_step "tdx-runner: verify"
has "$r/tampered.log" "verification failed at step 'quote_signature'"
has "$r/tampered.md" "<code>quote_signature</code>"
has "$r/tampered.md" "| quote_signature | fail |"
echo "ok: verify - a bundle with one changed quote byte fails naming quote_signature"

act soft verify "${V[@]}" --input "bundle=$tmp/tampered.json" --input allow-simulated=true \
	--input fail-on-error=false
[ "$rc" -eq 0 ] || { cat "$r/soft.log"; fail "fail-on-error=false still failed the step"; }
want soft outputs.ok false
want soft outputs.failed-step quote_signature
echo "ok: verify - fail-on-error=false reports ok=false without failing"

# policy inputs reach tdx-runner as flags
act appid verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input expect-app-id=0000000000000000000000000000000000000000
want appid outputs.failed-step identity
other=$(printf '%096d' 0)
act mrtd_bad verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "mrtd=$other"
want mrtd_bad outputs.failed-step measurements
act tcb verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "accept-tcb=SWHardeningNeeded"
want tcb outputs.failed-step tcb_status
act policy_ok verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "mrtd=$other, $mrtd" --input "accept-tcb=UpToDate, SWHardeningNeeded" \
	--input "expect-app-id=$app_id" --input "expect-compose-hash=$(expected compose_hash)"
want policy_ok outputs.ok true
has "$r/policy_ok.log" "--mrtd $other --mrtd $mrtd"
has "$r/policy_ok.log" "--accept UpToDate,SWHardeningNeeded --expect-app-id $app_id --expect-compose-hash"
echo "ok: verify - expect-app-id, expect-compose-hash, mrtd and accept-tcb are applied"

# inputs are data, never shell code
act inject verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "expect-app-id=\$(touch $tmp/pwned1)\"; touch $tmp/pwned2; \"" \
	--input "mrtd=\`touch $tmp/pwned3\`"
[ "$rc" -ne 0 ] || fail "garbage policy values passed"
[ -n "$(get inject outputs.failed-step)" ] || fail "inject: no failed step"
for f in pwned1 pwned2 pwned3; do [ ! -e "$tmp/$f" ] || fail "an input was executed as shell code ($f)"; done
act nobundle verify "${V[@]}" --input "bundle=$tmp/missing.json"
[ "$rc" -ne 0 ] || fail "a missing bundle passed"
has "$r/nobundle.log" "bundle '$tmp/missing.json' not found"
echo "ok: verify - inputs are not shell code; a missing bundle fails"

# the bundle as an artifact (actions/download-artifact stand-in copies from a local store)
mkdir -p "$tmp/artifacts/attestation" "$tmp/artifacts/two"
cp "$tmp/good.json" "$tmp/artifacts/attestation/tdx-attestation.json"
cp "$tmp/good.json" "$tmp/artifacts/two/a.json"
cp "$tmp/good.json" "$tmp/artifacts/two/b.json"
standin='python3 -c "
import json, os, shutil
w = json.loads(os.environ[\"STANDIN_WITH\"])
assert w[\"repository\"] == \"owner/project\" and w[\"run-id\"] == \"4242\", w
shutil.copytree(os.path.join(os.environ[\"ARTIFACT_STORE\"], w[\"name\"]), w[\"path\"], dirs_exist_ok=True)
"'
export ARTIFACT_STORE="$tmp/artifacts"
act artifact verify "${V[@]}" --input artifact-name=attestation --input allow-simulated=true \
	--uses "actions/download-artifact=$standin"
[ "$rc" -eq 0 ] || { cat "$r/artifact.log"; fail "artifact: the action failed"; }
case $(get artifact outputs.bundle) in */tdx-attestation.json) ;; *) fail "artifact: wrong bundle" ;; esac
act artifact2 verify "${V[@]}" --input artifact-name=two --input allow-simulated=true \
	--uses "actions/download-artifact=$standin"
[ "$rc" -ne 0 ] || fail "an artifact with two .json files passed without naming the bundle"
has "$r/artifact2.log" "holds 2 .json files"
act artifact3 verify "${V[@]}" --input artifact-name=two --input bundle=b.json --input allow-simulated=true \
	--uses "actions/download-artifact=$standin"
want artifact3 outputs.ok true
echo "ok: verify - bundle from an artifact (download-artifact pinned by SHA)"

# the binary from a download pinned by SHA-256 (file:// stands in for the release URL)
sum=$(sha256sum "$bin" | cut -d' ' -f1)
act dl verify --input "tdx-runner-url=file://$bin" --input "tdx-runner-sha256=$sum" \
	--input "bundle=$tmp/good.json" --input allow-simulated=true
want dl outputs.ok true
act dl_bad verify --input "tdx-runner-url=file://$bin" --input "tdx-runner-sha256=$(printf '%064d' 0)" \
	--input "bundle=$tmp/good.json" --input allow-simulated=true
[ "$rc" -ne 0 ] || fail "a download with the wrong SHA-256 was used"
want dl_bad failed_step "tdx-runner: install"
has "$r/dl_bad.log" "SHA-256 mismatch"
has "$r/dl_bad.log" "Error: step 'tdx-runner: install' failed"
act dl_nosum verify --input "tdx-runner-url=file://$bin" --input "bundle=$tmp/good.json"
want dl_nosum failed_step "tdx-runner: install"
has "$r/dl_nosum.log" "needs tdx-runner-sha256"
echo "ok: verify - a downloaded binary runs only when its SHA-256 matches"

# subjects: each line a path or glob; a pattern that matches nothing fails early
printf 'release payload\n' >"$GITHUB_WORKSPACE/out.bin"
act subj_none verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "subject=dist/*.tar.gz"
want subj_none failed_step "tdx-runner: verify"
has "$r/subj_none.log" "subject 'dist/*.tar.gz' matches no file"
act subj verify "${V[@]}" --input "bundle=$tmp/good.json" --input allow-simulated=true \
	--input "subject=out.b*"
want subj outputs.subjects "$(sha256sum out.bin | cut -d' ' -f1) out.bin"
has "$r/subj.md" "out.bin"
# a simulated bundle has no end part (no statement): no subject can be in it
[ "$rc" -ne 0 ] || fail "a subject verified against a bundle without a statement"
[ -n "$(get subj outputs.failed-step)" ] || fail "subject failure names no step"
echo "ok: verify - subject globs expand; a bundle without a statement fails naming $(get subj outputs.failed-step)"

# a bundle WITH an end part: `tdx-runner run --subject` on the local executor
# (real sshd and guest agent, as in test_run_local.sh); skipped without them
have_local=1
for t in /usr/sbin/sshd rsync ssh-keygen git; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { have_local=0; echo "SKIP: end-part case: $t is not installed"; }
done
if [ "$have_local" = 1 ]; then
	proj="$tmp/proj"
	mkdir -p "$proj"
	printf '{"state_dir": "%s"}' "$tmp/state" >"$tmp/cfg.json"
	(
		cd "$proj"
		git init -q
		printf 'src\n' >src.txt
		"$bin" run --config "$tmp/cfg.json" --subject out.bin --artifacts out.bin \
			-- sh -c 'printf "built in the box\n" > out.bin' >"$tmp/run.log" 2>&1
	) || { cat "$tmp/run.log"; "$bin" reap --config "$tmp/cfg.json" >/dev/null 2>&1 || true; fail "tdx-runner run --subject failed"; }
	"$bin" reap --config "$tmp/cfg.json" >/dev/null 2>&1 || true
	[ -f "$proj/tdx-attestation.json" ] && [ -f "$proj/out.bin" ] || fail "run --subject wrote no bundle or artifact"
	act prov verify "${V[@]}" --input "bundle=$proj/tdx-attestation.json" --input allow-simulated=true \
		--input "subject=$proj/out.bin"
	[ "$rc" -eq 0 ] || { cat "$r/prov.log"; fail "prov: a bundle with an end part and its subject failed"; }
	"$bin" verify --allow-simulated --json "$proj/tdx-attestation.json" >"$tmp/prov.verdict" || true
	stmt=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statement"]["sha256"])' "$tmp/prov.verdict")
	want prov outputs.statement-digest "$stmt"
	has "$r/prov.md" "| statement SHA-256 | \`$stmt\` |"
	has "$r/prov.md" "\`$(sha256sum "$proj/out.bin" | cut -d' ' -f1)\` out.bin"
	printf 'changed\n' >>"$proj/out.bin"
	act prov_bad verify "${V[@]}" --input "bundle=$proj/tdx-attestation.json" --input allow-simulated=true \
		--input "subject=$proj/out.bin"
	[ "$rc" -ne 0 ] || fail "prov: a changed subject file passed"
	want prov_bad outputs.failed-step subject
	has "$r/prov_bad.log" "verification failed at step 'subject'"
	echo "ok: verify - a run --subject bundle passes with its file, fails naming 'subject' when the file changed"
fi

# opt-in: the default install path, building tdx-runner from the action's own source tree
if [ "${TDXR_ACTIONS_BUILD:-0}" = 1 ]; then
	act build verify --input "bundle=$tmp/good.json" --input allow-simulated=true
	want build outputs.ok true
	has "$r/build.log" "built from $src"
	echo "ok: verify - built tdx-runner from source and verified"
fi

# --- actions/attach-to-release against a stand-in gh that keeps releases on disk
mkdir -p "$tmp/bin" "$tmp/gh/releases/v1.0.0"
cat >"$tmp/bin/gh" <<'SH'
#!/usr/bin/env bash
# stand-in for the GitHub CLI: `gh release view|create|upload` on $GH_STUB/releases/TAG/
set -euo pipefail
printf 'gh %s | repo=%s token=%s\n' "$*" "${GH_REPO:-}" "${GH_TOKEN:+set}" >>"$GH_STUB/log"
[ -n "${GH_TOKEN:-}" ] || { echo "gh: no GH_TOKEN" >&2; exit 4; }
rel="$GH_STUB/releases/${3:-}"
case "$1 $2" in
"release view")
	[ -d "$rel" ] || { echo "release not found" >&2; exit 1; }
	case " $* " in *" --jq .url "*) echo "https://github.com/$GH_REPO/releases/tag/$3" ;; *) echo "{}" ;; esac ;;
"release create") mkdir -p "$rel" ;;
"release upload")
	[ -d "$rel" ] || { echo "release not found" >&2; exit 1; }
	shift 3
	clobber=0 files=()
	for a in "$@"; do if [ "$a" = --clobber ]; then clobber=1; else files+=("$a"); fi; done
	for f in "${files[@]}"; do
		n=$(basename "$f")
		if [ -e "$rel/$n" ] && [ "$clobber" = 0 ]; then echo "asset $n already exists" >&2; exit 1; fi
		cp "$f" "$rel/$n"
	done ;;
*) echo "gh stand-in: unsupported: $*" >&2; exit 2 ;;
esac
SH
chmod +x "$tmp/bin/gh"
export GH_STUB="$tmp/gh" PATH="$tmp/bin:$PATH" TEST_GITHUB_TOKEN=ghs_from_github_token
printf '{"_type":"https://in-toto.io/Statement/v1"}\n' >"$GITHUB_WORKSPACE/statement.json"
cp "$tmp/good.json" "$GITHUB_WORKSPACE/tdx-attestation.json"
R=(--input bundle=tdx-attestation.json --input statement=statement.json)

GITHUB_EVENT_NAME=push GITHUB_REF=refs/tags/v1.0.0 GITHUB_REF_NAME=v1.0.0 GITHUB_REF_TYPE=tag \
	act rel1 attach-to-release "${R[@]}"
[ "$rc" -eq 0 ] || { cat "$r/rel1.log"; fail "attach: upload on a tag failed"; }
want rel1 outputs.tag v1.0.0
want rel1 outputs.url "https://github.com/owner/project/releases/tag/v1.0.0"
[ "$(get rel1 outputs.assets)" = $'tdx-attestation.json\nstatement.json' ] || fail "attach: assets output"
cmp -s "$tmp/gh/releases/v1.0.0/tdx-attestation.json" "$tmp/good.json" || fail "attach: bundle not uploaded"
[ -f "$tmp/gh/releases/v1.0.0/statement.json" ] || fail "attach: statement not uploaded"
has "$tmp/gh/log" "gh release upload v1.0.0 tdx-attestation.json statement.json --clobber | repo=owner/project token=set"
has "$r/rel1.md" "| tdx-attestation.json | \`$(sha256sum "$tmp/good.json" | cut -d' ' -f1)\` |"
# idempotent: a re-run replaces the assets
GITHUB_EVENT_NAME=push GITHUB_REF=refs/tags/v1.0.0 GITHUB_REF_NAME=v1.0.0 GITHUB_REF_TYPE=tag \
	act rel2 attach-to-release "${R[@]}"
[ "$rc" -eq 0 ] || { cat "$r/rel2.log"; fail "attach: a re-run failed"; }
[ "$(ls "$tmp/gh/releases/v1.0.0" | wc -l)" -eq 2 ] || fail "attach: a re-run duplicated assets"
echo "ok: attach-to-release - uploads bundle + statement on a tag, idempotently"

# release event: the tag comes from the event payload
printf '{"action":"published","release":{"tag_name":"v2.0.0"}}\n' >"$tmp/event.json"
mkdir -p "$tmp/gh/releases/v2.0.0"
GITHUB_EVENT_NAME=release GITHUB_REF=refs/tags/v2.0.0 GITHUB_REF_NAME=v2.0.0 GITHUB_REF_TYPE=tag \
	act rel3 attach-to-release --input bundle=tdx-attestation.json --event "$tmp/event.json"
want rel3 outputs.tag v2.0.0
[ -f "$tmp/gh/releases/v2.0.0/tdx-attestation.json" ] || fail "attach: release event upload"
echo "ok: attach-to-release - release event"

# refusals: not a tag, no release, not a bundle
: >"$tmp/gh/log"
act branch attach-to-release "${R[@]}"
[ "$rc" -ne 0 ] || fail "attach: ran on a branch push"
want branch failed_step "tdx-runner: check the tag and the files"
has "$r/branch.log" "refusing to upload: this is a 'push' event on 'refs/heads/main'"
[ ! -s "$tmp/gh/log" ] || fail "attach: gh was called on a branch push"
GITHUB_REF=refs/tags/v3.0.0 GITHUB_REF_NAME=v3.0.0 GITHUB_REF_TYPE=tag act norel attach-to-release "${R[@]}"
[ "$rc" -ne 0 ] || fail "attach: uploaded to a release that does not exist"
has "$r/norel.log" "no release for tag v3.0.0 in owner/project"
GITHUB_REF=refs/tags/v3.0.0 GITHUB_REF_NAME=v3.0.0 GITHUB_REF_TYPE=tag \
	act create attach-to-release "${R[@]}" --input create-release=true
want create outcome success
has "$tmp/gh/log" "gh release create v3.0.0 --verify-tag"
[ -f "$tmp/gh/releases/v3.0.0/statement.json" ] || fail "attach: create-release did not upload"
GITHUB_REF=refs/tags/v1.0.0 GITHUB_REF_NAME=v1.0.0 GITHUB_REF_TYPE=tag \
	act notbundle attach-to-release --input bundle=statement.json
[ "$rc" -ne 0 ] || fail "attach: uploaded a file that is not a bundle"
has "$r/notbundle.log" "is not a tdx-runner attestation bundle"
echo "ok: attach-to-release - refuses a branch, a missing release (unless create-release), a non-bundle"

echo "test_actions: all passed"

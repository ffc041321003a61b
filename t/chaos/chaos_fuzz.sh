#!/usr/bin/env bash
# libFuzzer runs of every parser that reads outside input
# (docs/RELIABILITY.md, "Hostile input"): YAML rule files (fuzz_config),
# SOAP replies with VM properties and changed areas (fuzz_soap), status
# socket requests (fuzz_request), VMDK descriptors (fuzz_vmdk),
# multi-range answers from a datastore (fuzz_byteranges) and backup
# repository manifests and indexes (fuzz_repo_manifest, fuzz_repo_index), each
# under ASan + UBSan + LeakSanitizer with its invariants checked, starting
# from the corpora in t/fuzz/corpus/ (which ctest replays on every run).
# CI size: 8 s per target; CHAOS_FULL=1: 5,000,000 executions per target.
# The corpora are left alone here; `tools/fuzz --full` is what grows them.
. "$(dirname "$0")/../integration/lib.sh"

if [ "${CHAOS_FULL:-0}" = 1 ]; then
	size=(--full)
else
	size=(--time 8)
fi
"$SRC/tools/fuzz" "${size[@]}" --no-merge >"$T/fuzz.out" 2>"$T/fuzz.err" || {
	cat "$T/fuzz.out"
	tail -n 40 "$T/fuzz.err" | sed 's/^/# /'
	fail "a fuzz target crashed or could not be built (reproducer in t/fuzz/artifacts/)"
}
figure=""
while read -r _ target execs _; do
	target=${target%:}
	[ "$execs" -gt 0 ] && ok "$target: $execs executions, no crash, leak or undefined behaviour" ||
		fail "$target ran no input"
	figure+="${figure:+, }$target $execs"
done < <(grep '^fuzz: ' "$T/fuzz.out")
[ -n "$figure" ] || fail "no fuzz target ran: $(cat "$T/fuzz.out")"
echo "# figure: fuzz executions: $figure (no crash)"

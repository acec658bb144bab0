#!/usr/bin/env bash
# The find-package test: installs this build into a private prefix, then builds examples/ alone against it with
# find_package(cnode), as a consumer would, and runs the consumer's --help-free check (the minimal example exits 2
# on a bad name without touching the network).
#   run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/examples" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" -j 2 >/dev/null
test -x "$work/consumer/cnode-example-counter"
# A bad node name is refused before anything starts: the consumer links and runs.
set +e
"$work/consumer/cnode-example-minimal" 'bad name' 2>"$work/err"
code=$?
set -e
grep -q "Invalid node name" "$work/err" || { cat "$work/err"; echo "unexpected output"; exit 1; }
[ "$code" = 2 ] || { echo "exit $code, expected 2"; exit 1; }
echo "find-package: 1 passed, 0 failed"

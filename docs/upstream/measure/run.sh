#!/usr/bin/env bash
# Builds ssh-dial's side_by_side and scale benchmarks against russh 0.65.1
# with docs/upstream/*.patch applied, and runs them. Compare with
# `cargo bench --bench side_by_side` and `cargo bench --bench scale` at the
# repository root (the same programs on the published russh).
#
#   docs/upstream/measure/run.sh                 # side_by_side 1000 3, scale 10000
#   docs/upstream/measure/run.sh 300 1 1000      # smaller
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/russh-0.65.1 2>/dev/null | head -1 || true)"
if [ -z "$src" ]; then
    echo "russh 0.65.1 is not in the cargo registry: run 'cargo build' at the repository root first" >&2
    exit 1
fi
rm -rf "$here/russh"
cp -r "$src" "$here/russh"
for patch in "$here"/../*.patch; do
    patch -s -d "$here/russh" -p1 < "$patch"
done
cd "$here"
cargo build --release --bins
./target/release/side_by_side "${1:-1000}" "${2:-3}"
./target/release/scale "${3:-10000}"

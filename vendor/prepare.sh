#!/usr/bin/env bash
# Builds vendor/kafka-protocol: kafka-protocol 0.18.0 from crates.io plus our patches in vendor/patches/.
# Idempotent and quick when already done (a stamp records which patches were applied). Cargo.toml points
# [patch.crates-io] at the result, so run this before any cargo command (test.sh and run.sh do).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

name=kafka-protocol version=0.18.0
# sha256 of the .crate file, as in the crates.io index (cksum of kafka-protocol 0.18.0).
sha256=099d5c2f1b40cd830cbf18ca4d2a0805f2875b811ca18f0372b2433e68fe2dda
out=$name
stamp="$out/.vltava-patches"

want="$version $(cat patches/$name-$version-*.patch | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crate="$work/$name-$version.crate"
# Cargo's download cache first (works offline), then crates.io.
cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n1 || true)
if [[ -n "$cached" ]]; then
  cp "$cached" "$crate"
else
  curl -sSfL --retry 3 -o "$crate" "https://static.crates.io/crates/$name/$name-$version.crate"
fi
echo "$sha256  $crate" | sha256sum -c --quiet -
tar -xzf "$crate" -C "$work"
for p in patches/$name-$version-*.patch; do
  (cd "$work/$name-$version" && git apply -p1 --whitespace=nowarn) < "$p"
done
echo "$want" > "$work/$name-$version/.vltava-patches"
rm -rf "$out"
mv "$work/$name-$version" "$out"
echo "vendor/prepare.sh: $out = $name $version + $(ls patches/$name-$version-*.patch | wc -l) patch(es)"

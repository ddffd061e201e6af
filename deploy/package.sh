#!/bin/sh
# Builds the agent's release tarball: outpost-agent-<version>-linux-<arch>.tar.gz holding the
# compiled JavaScript (dist/), the production node_modules, the systemd unit, install and
# uninstall scripts and example configs. Native addons (better-sqlite3) are built for the
# machine that runs `npm install`, so build the arm64 tarball on arm64 (or in an arm64
# container) and the x64 one on x64.
#
#   npm run package -- [--out DIR] [--skip-build | --no-check]
#
# --no-check emits without type checking (tsc --noCheck), for when `npm run typecheck` has
# just run, as in the test suite.
set -eu

out=.
skip_build=0
check=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    --no-check) check=--noCheck; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
arch=$(node -p 'process.arch')
case "$arch" in
  x64|arm64) ;;
  *) echo "package.sh: Outpost ships for x64 and arm64 only, not $arch" >&2; exit 1 ;;
esac
version=$(node -p 'require("./package.json").version')
name="outpost-agent-$version-linux-$arch"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/$name"
mkdir -p "$pkg/dist" "$pkg/node_modules" "$pkg/deploy/config"
# A fresh compile into the stage (not ./dist), so what ships is exactly the current sources.
built=dist
if [ "$skip_build" = 0 ]; then
  built="$stage/build"
  node_modules/.bin/tsc -p deploy/tsconfig.package.json --outDir "$built" $check
fi
[ -f "$built/agent/cli.js" ] || { echo "package.sh: $built/agent/cli.js missing; run npm run build" >&2; exit 1; }
cp -R "$built/agent" "$built/shared" "$pkg/dist/"
find "$pkg/dist" -name '*.map' -delete
cp package.json "$pkg/"
cp deploy/outpost-agent.service deploy/install.sh deploy/uninstall.sh "$pkg/deploy/"
cp deploy/config/* "$pkg/deploy/config/"
printf '{"name":"outpost-agent","version":"%s","arch":"%s","node":"%s"}\n' \
  "$version" "$arch" "$(node -p 'process.versions.modules')" > "$pkg/outpost-package.json"

# Production dependencies only, as npm resolved them (top-level folders; nested ones come along).
modules=$(cd node_modules && pwd -P)
npm ls --omit=dev --all --parseable 2>/dev/null | while read -r path; do
  rel=${path#"$here/node_modules/"}
  case "$rel" in
    "$path"|*/node_modules/*) continue ;;
  esac
  mkdir -p "$pkg/node_modules/$(dirname "$rel")"
  [ -e "$pkg/node_modules/$rel" ] || cp -R "$modules/$rel" "$pkg/node_modules/$rel"
done

# onnxruntime-node carries binaries for every OS; keep only linux/<arch>.
ort="$pkg/node_modules/onnxruntime-node/bin/napi-v6"
if [ -d "$ort" ]; then
  find "$ort" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
  find "$ort/linux" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} +
fi
# better-sqlite3 needs only its compiled addon and lib/, not the SQLite sources it was built from.
bs="$pkg/node_modules/better-sqlite3"
if [ -d "$bs" ]; then
  rm -rf "$bs/deps" "$bs/src" "$bs/build/Release/obj" "$bs/build/Release/obj.target" "$bs/build/Release/.deps" \
    "$bs/build/deps" "$bs/build/Release/test_extension.node"
fi

mkdir -p "$out"
tar -C "$stage" -cf - "$name" | gzip -1 > "$out/$name.tar.gz"
echo "$out/$name.tar.gz"

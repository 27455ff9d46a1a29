#!/usr/bin/env bash
# Builds Jaeger v2 (the all-in-one binary: OTLP in, query API out) from its Go
# module, as a static binary, and prints its path on stdout. Progress goes to
# stderr. The result is cached under $(go env GOMODCACHE)/cache/uranus-jaeger,
# so only the first run compiles (minutes); later runs print the path at once.
#
# Why a wrapper module: `go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0`
# refuses, because Jaeger's go.mod has replace directives. A module of our own
# that requires Jaeger and names its command with a `tool` directive builds
# the same main package (replace directives of a dependency are ignored).
# Jaeger's own go.sum seeds ours: every module Jaeger pins is then checked
# against the hashes Jaeger committed (its module zip is itself verified by
# the checksum database), so the build does not depend on every one of those
# modules being in the checksum database. Should one still be missing, the
# error names it; exempt just that path: GONOSUMDB=the/module/path build.sh
#
# Usage: deploy/jaeger/build.sh          print the binary's path, building it if needed
#        JAEGER_VERSION=v1.76.0 GOARCH=amd64 deploy/jaeger/build.sh
set -euo pipefail

version="${JAEGER_VERSION:-v1.76.0}"
goarch="${GOARCH:-$(go env GOARCH)}"
cache="$(go env GOMODCACHE)/cache/uranus-jaeger"
out="$cache/jaeger-$version-linux-$goarch"

say() { printf 'jaeger build: %s\n' "$*" >&2; }

if [ -x "$out" ]; then
	say "cached: $out"
	echo "$out"
	exit 0
fi

# One build at a time (tests in several packages may ask at once); whoever
# waited finds the binary made.
mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
	say "another build is running; waiting for it"
	flock 9
fi
if [ -x "$out" ]; then
	say "built meanwhile: $out"
	echo "$out"
	exit 0
fi

start=$(date +%s)
work=$(mktemp -d "$cache/work-$version-$goarch.XXXXXX")
trap 'rm -rf "$work"' EXIT

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOOS=linux GOARCH="$goarch"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

say "fetching github.com/jaegertracing/jaeger@$version"
src=$(cd "$work" && go mod download -json "github.com/jaegertracing/jaeger@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -f "$src/go.sum" ]; then
	say "could not download github.com/jaegertracing/jaeger@$version (is the module proxy reachable? GOPROXY=$(go env GOPROXY))"
	exit 1
fi

cat >"$work/go.mod" <<EOF
// Throwaway module that builds Jaeger's command (written by uranus's deploy/jaeger/build.sh).
module uranus.local/jaeger-build

go 1.24

require github.com/jaegertracing/jaeger $version

tool github.com/jaegertracing/jaeger/cmd/jaeger
EOF
cp "$src/go.sum" "$work/go.sum"
chmod u+w "$work/go.sum"

say "resolving dependencies (go mod tidy; downloads ~400 modules the first time)"
(cd "$work" && go mod tidy -e) 2>&1 | grep -v '^go: downloading' >&2 || true

say "compiling (CGO_ENABLED=0, static; takes several minutes the first time)"
tmp="$out.tmp.$$"
(cd "$work" && go build -trimpath -ldflags='-s -w' -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv "$tmp" "$out"
say "built $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start))s"
echo "$out"

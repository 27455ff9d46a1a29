#!/usr/bin/env bash
# Builds the images of the compose demo from static binaries, FROM scratch:
# nothing is pulled from a registry.
#
#   uranus:dev          the sidecar (Dockerfile at the repository root)
#   uranus-demo:dev     the demo services shop, stock, payments (deploy/docker/Dockerfile.demo)
#   uranus-jaeger:dev   with --jaeger: Jaeger v2 built from its Go module, for
#                       docker-compose.local.yaml (deploy/jaeger/Dockerfile)
#
# The tags follow URANUS_IMAGE, URANUS_DEMO_IMAGE and JAEGER_IMAGE, the same
# variables docker-compose.yaml reads.
set -euo pipefail
cd "$(dirname "$0")/../.."

uranus_image="${URANUS_IMAGE:-uranus:dev}"
demo_image="${URANUS_DEMO_IMAGE:-uranus-demo:dev}"
jaeger_image="${JAEGER_IMAGE:-uranus-jaeger:dev}"
with_jaeger=false
for arg in "$@"; do
	case "$arg" in
	--jaeger) with_jaeger=true ;;
	*) echo "usage: $0 [--jaeger]" >&2; exit 2 ;;
	esac
done

say() { printf 'build: %s\n' "$*" >&2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

say "compiling a static uranus (CGO_ENABLED=0)"
mkdir -p "$ctx/uranus" "$ctx/demo/demo"
CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$ctx/uranus/uranus" ./cmd/uranus
# The demo services are the same binary under three names; hard links keep
# one copy in the image layer.
for name in shop stock payments; do
	ln "$ctx/uranus/uranus" "$ctx/demo/demo/$name"
done

say "image $uranus_image"
docker build -q -f Dockerfile -t "$uranus_image" "$ctx/uranus" >/dev/null
say "image $demo_image"
docker build -q -f deploy/docker/Dockerfile.demo -t "$demo_image" "$ctx/demo" >/dev/null

if $with_jaeger; then
	bin=$(deploy/jaeger/build.sh)
	mkdir -p "$ctx/jaeger"
	cp "$bin" "$ctx/jaeger/jaeger"
	cp deploy/jaeger/config.yaml "$ctx/jaeger/config.yaml"
	say "image $jaeger_image"
	docker build -q -f deploy/jaeger/Dockerfile -t "$jaeger_image" "$ctx/jaeger" >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($uranus_image|$demo_image|$jaeger_image)  " >&2 || true

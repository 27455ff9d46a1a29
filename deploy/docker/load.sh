#!/usr/bin/env bash
# Sends a bounded burst of requests to the compose demo's shop: product
# pages, checkouts (shop → stock over HTTP, shop → payments over HTTPS) and
# failures, then stops.
#
#   deploy/docker/load.sh [REQUESTS]     default 60; SHOP_PORT as in docker-compose.yaml
set -euo pipefail
n="${1:-60}"
base="http://127.0.0.1:${SHOP_PORT:-8080}"
paths=("/products/7" "/checkout?sku=7" "/products/42" "/checkout?sku=42" "/slow" "/fail")

if ! curl -s -o /dev/null --max-time 5 "$base/products/1"; then
	echo "load: the shop does not answer on $base: is the demo up? (docker compose up -d)" >&2
	exit 1
fi
declare -A codes=()
for ((i = 0; i < n; i++)); do
	code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$base${paths[i % ${#paths[@]}]}" || true)
	codes[$code]=$((${codes[$code]:-0} + 1))
	if (((i + 1) % 20 == 0)); then
		echo "load: $((i + 1))/$n requests sent" >&2
	fi
	sleep 0.1
done
summary=""
for c in "${!codes[@]}"; do summary+=" $c×${codes[$c]}"; done
echo "load: sent $n requests to $base (status codes:$summary)." \
	"Traces: http://127.0.0.1:${JAEGER_UI_PORT:-16686} (API: /api/traces?service=shop)" >&2

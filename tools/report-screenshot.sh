#!/usr/bin/env bash
# Renders an HTML report headless in Chromium and writes a PNG screenshot.
# Usage: tools/report-screenshot.sh REPORT.html OUT.png
# Installs nothing: needs Debian's `chromium` (apt-get install -y chromium)
# or `chromium-browser` on PATH. Exit status 2 when neither is there.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 REPORT.html OUT.png" >&2
  exit 64
fi
html=$(realpath "$1")
out=$(realpath -m "$2")
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "error: chromium not found on PATH (apt-get install -y chromium)" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --screenshot="$out" --window-size=1200,3000 \
  "file://$html" >/dev/null 2>&1 || true
if [ ! -s "$out" ]; then
  echo "error: chromium wrote no screenshot to $out" >&2
  exit 1
fi
echo "wrote $out"

#!/usr/bin/env bash
# Open every report page in headless Chromium with networking disabled and check that each
# page's plotly figures were drawn (an SVG with class "main-svg" per figure div).
# Needs Debian's `chromium` (apt-get install chromium) and root or user namespaces for `unshare -n`.
set -euo pipefail
cd "$(dirname "$0")/.."
reports=${1:-reports}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: apt-get install chromium" >&2
  exit 2
fi
status=0
for page in "$reports"/[0-9][0-9]_*.html; do
  dom=$(unshare -n -- "$browser" --headless --no-sandbox --disable-gpu --virtual-time-budget=10000 --dump-dom "file://$(realpath "$page")" 2>/dev/null)
  figs=$(grep -o 'class="plotly-graph-div' <<<"$dom" | wc -l)
  drawn=$(grep -o 'class="main-svg"' <<<"$dom" | wc -l)
  echo "$(basename "$page"): $figs figures, $drawn plotly SVG layers"
  if [ "$figs" -eq 0 ] || [ "$drawn" -lt "$figs" ]; then
    echo "  not all figures were drawn offline" >&2
    status=1
  fi
done
exit $status

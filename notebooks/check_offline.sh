#!/usr/bin/env bash
# Open every report page in headless Chromium with networking disabled and check that every
# plotly figure on each page was drawn.
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
  dom=$(unshare -n -- "$browser" --headless --no-sandbox --disable-gpu --virtual-time-budget=30000 --dump-dom "file://$(realpath "$page")" 2>/dev/null)
  figs=$(grep -o 'class="plotly-graph-div' <<<"$dom" | wc -l)
  # A drawn figure's div gets the class js-plotly-plot and an <svg class="main-svg"> inside.
  drawn=$(grep -o 'class="plotly-graph-div js-plotly-plot"' <<<"$dom" | wc -l)
  echo "$(basename "$page"): $figs figures, $drawn drawn"
  if [ "$figs" -eq 0 ] || [ "$drawn" -lt "$figs" ]; then
    echo "  not all figures were drawn offline" >&2
    status=1
  fi
done
exit $status

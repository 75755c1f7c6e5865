#!/usr/bin/env bash
# Open every report page in headless Chromium with networking disabled and check that every
# plotly figure on each page was drawn; then the index: every thumbnail decoded, every link a
# file of the report folder, and every linked figure page drawn as well; then the published
# notebooks (notebooks/executed/, or the second argument) as a viewer without plotly.js shows
# them: every figure's static image decoded.
# Needs Debian's `chromium` (apt-get install chromium) and root or user namespaces for `unshare -n`.
set -euo pipefail
cd "$(dirname "$0")/.."
reports=${1:-reports}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: apt-get install chromium" >&2
  exit 2
fi
dom() {
  unshare -n -- "$browser" --headless --no-sandbox --disable-gpu --virtual-time-budget=30000 --dump-dom "file://$(realpath "$1")" 2>/dev/null
}
# figures_drawn PAGE: all plotly divs of the page drawn (and at least one).
figures_drawn() {
  local d figs drawn
  d=$(dom "$1")
  figs=$(grep -o 'class="plotly-graph-div' <<<"$d" | wc -l)
  # A drawn figure's div gets the class js-plotly-plot and an <svg class="main-svg"> inside.
  drawn=$(grep -o 'class="plotly-graph-div js-plotly-plot"' <<<"$d" | wc -l)
  echo "$(basename "$1"): $figs figures, $drawn drawn"
  [ "$figs" -gt 0 ] && [ "$drawn" -ge "$figs" ]
}
status=0
for page in "$reports"/[0-9][0-9]_*.html; do
  figures_drawn "$page" || { echo "  not all figures were drawn offline" >&2; status=1; }
done

index="$reports/index.html"
if [ ! -f "$index" ]; then
  echo "no $index" >&2
  exit 1
fi
pages=$(ls "$reports"/[0-9][0-9]_*.html | wc -l)
listed=$(grep -o '<section class="nb" id="nb[0-9][0-9]"' "$index" | wc -l)
echo "index.html: $listed of $pages notebook pages listed"
[ "$listed" -eq "$pages" ] || { echo "  the index does not list every executed notebook" >&2; status=1; }
d=$(dom "$index")
images=$(grep -o 'data-images="[0-9]*"' <<<"$d" | grep -o '[0-9]*' || echo 0)
drawn=$(grep -o 'data-drawn="[0-9]*"' <<<"$d" | grep -o '[0-9]*' || echo 0)
echo "index.html: $drawn of $images thumbnails drawn"
if [ "$images" -eq 0 ] || [ "$drawn" -lt "$images" ]; then
  echo "  not all thumbnails were drawn offline" >&2
  status=1
fi
links=$(grep -o '\(href\|src\)="[^"#][^"]*"' "$index" | sed 's/^[a-z]*="//; s/"$//' | sort -u)
checked=0
for target in $links; do
  case "$target" in
    *:*) echo "  non-local link in the index: $target" >&2; status=1; continue ;;
  esac
  if [ ! -e "$reports/$target" ]; then
    echo "  broken link in the index: $target" >&2
    status=1
  elif [[ "$target" == figures/*.html ]]; then
    figures_drawn "$reports/$target" >/dev/null || { echo "  figure page not drawn: $target" >&2; status=1; }
  fi
  checked=$((checked + 1))
done
echo "index.html: $checked local links followed"

published=${2:-notebooks/executed}
static=$(mktemp -d)
trap 'rm -rf "$static"' EXIT
"${PYTHON:-.venv/bin/python}" notebooks/publish.py pages "$published" --out "$static" >/dev/null
pages=0
for page in "$static"/[0-9][0-9]_*.html; do
  [ -e "$page" ] || continue
  pages=$((pages + 1))
  d=$(dom "$page")
  figs=$(grep -o '<meta name="figures" content="[0-9]*"' <<<"$d" | grep -o '[0-9]*' || echo 0)
  images=$(grep -o 'data-images="[0-9]*"' <<<"$d" | grep -o '[0-9]*' || echo 0)
  drawn=$(grep -o 'data-drawn="[0-9]*"' <<<"$d" | grep -o '[0-9]*' || echo 0)
  echo "published $(basename "$page" .html): $figs figures, $drawn of $images images drawn without plotly.js"
  if [ "$figs" -eq 0 ] || [ "$drawn" -lt "$images" ] || [ "$images" -lt "$figs" ]; then
    echo "  not every figure of the published notebook has a drawn static image" >&2
    status=1
  fi
done
if [ "$pages" -eq 0 ]; then
  echo "no published notebooks in $published" >&2
  status=1
fi
exit $status

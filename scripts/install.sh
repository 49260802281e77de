#!/usr/bin/env bash
# Install tia-scanner-robust into a virtual environment, reproducibly.
#
#   bash scripts/install.sh            # runtime only   -> .venv
#   bash scripts/install.sh test       # + test tools
#   VENV=/path/to/env bash scripts/install.sh docs
#
# Steps: create the venv, install the package (editable) with the optional
# extra under constraints.txt, then make the shared ``cv2/`` folder come from
# exactly one OpenCV wheel (tiatoolbox wants opencv-python, albumentations
# wants opencv-python-headless and both unpack into cv2/), and check it imports.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRA="${1:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
spec="."
[ -n "$EXTRA" ] && spec=".[$EXTRA]"
"${PIP[@]}" install --quiet -c constraints.txt -e "$spec"

# One cv2: re-install the headless wheel (no GUI libraries; right for servers)
# over whatever the resolver unpacked last, at the pinned version.
headless=$(grep -E '^opencv-python-headless==' constraints.txt)
"${PIP[@]}" install --quiet --force-reinstall --no-deps "$headless"
"$VENV/bin/python" - <<'PY'
import cv2, numpy as np
ok, _ = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))
assert ok, "cv2 cannot encode PNG"
print(f"cv2 {cv2.__version__} OK")
PY
echo "tia-scanner-robust installed in $VENV"

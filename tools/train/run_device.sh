#!/usr/bin/env bash
# What one training run on the GPU machine does (the folder holds this directory's *.py, tokenizer.json and
# data/{train,heldout}.{txt,u16}): check the tokenizer with HF `tokenizers`, train for MINUTES, export to OUT.
set -uo pipefail
MINUTES="${1:-6}"
OUT="${2:-out}"
shift 2 || true
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 tok_check.py tokenizer.json data 2>&1 | tee "$OUT/tok_check.log"
python3 train.py --data data --tokenizer tokenizer.json --out "$OUT" --minutes "$MINUTES" "$@" 2>&1 | tee "$OUT/train.log"

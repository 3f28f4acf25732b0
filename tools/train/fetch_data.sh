#!/usr/bin/env bash
# Fetches the training text (npm package nlp-corpus 4.4.0, MIT) and writes the fixed train / held-out split:
#   $DATA/train.txt    sentences of builds/doc-2.json .. doc-99.json, one per line
#   $DATA/heldout.txt  sentences of builds/doc-0.json and doc-1.json, one per line
# The package tarball and both outputs are checked by SHA-256, so a changed upstream fails loudly.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DATA="${1:-$here/data}"
mkdir -p "$DATA"
cd "$DATA"
if [ ! -f nlp-corpus-4.4.0.tgz ]; then
    npm pack nlp-corpus@4.4.0 >/dev/null
fi
echo "099df43749ba6bb26953f98863a5d38ff764648ce21872ceb1515a3eacb5682a  nlp-corpus-4.4.0.tgz" | sha256sum -c -
rm -rf package && tar xzf nlp-corpus-4.4.0.tgz
python3 "$here/prepare_data.py" package/builds "$DATA"
sha256sum -c "$here/data.sha256"

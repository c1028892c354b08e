#!/bin/bash
# snapshot.sh TAG COMMIT [mine]: the package as of COMMIT in /work/models/cpu_speed/src_TAG, plus
# (with "mine") my working-tree files. Other helpers edit the same working tree at the same time;
# candidates must not pick their uncommitted changes up.
set -e
SRC=/work/models/cpu_speed/src_$1
rm -rf $SRC && mkdir -p $SRC
cd /work/main
git archive $2 seagull_edge | tar -x -C $SRC
if [ "$3" == "mine" ]; then
  for f in seagull_edge/model/texture.py seagull_edge/model/backbone.py seagull_edge/backends/onnxruntime.py seagull_edge/export/quantize.py; do
    cp $f $SRC/$f
  done
fi
echo $SRC

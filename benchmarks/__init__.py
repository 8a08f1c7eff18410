"""The benchmarks: the measurements of `make bench` (tools/bench.py) and `make gpu-check`
(tools/gpu_check.py), one module per concern.

  caffe_nets  caffe.Nets from NetParameters, their inputs, forward+backward, layer timing
  stats       the figures' arithmetic: Python layers' share and bytes, median ratios, targets
  inputs      generated VOC-like images and label maps
  measure     the nets measured in this process: joint net, unpooling, deploy, the authors'
              protocol; the machine
  pipeline    the data path and the tools: LMDB builds, the data layer, evaluation, a training
              step's peak memory, tools/infer.py's workers
  gpu         CPU against GPU: device query, one batch, losses and gradients, GPU timing
  report      the headline figures, the printed reports and the JSON

The bench uses the library (transfernet/), the builders (data_prep/) and the Caffe layers
(python_layers/); none of them uses the bench (tests/test_imports.py).
"""

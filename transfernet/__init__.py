"""TransferNet (Hong et al., CVPR 2016) on Caffe: shared library code."""

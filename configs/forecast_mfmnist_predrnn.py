"""OpenSTL's PredRNN, PredRNN-V2 and PredRNN++ recipes on Moving Fashion-MNIST: for a GPU.

    --config=configs/forecast_mfmnist_predrnn.py:predrnn      (or :predrnn_v2, :predrnn_pp)

The model settings of OpenSTL's configs/mmnist/PredRNN.py, PredRNNv2.py and PredRNNpp.py (the
Moving MNIST recipes; commit 058a7ad / 99163f2 of chengtan9907/OpenSTL): 4 layers of 128
features, 5x5 kernels, 4x4 patches, scheduled sampling from 1 down by 2e-5 per update, off from
update 50,000; PredRNN-V2 adds decouple_beta 0.1 and reverse scheduled sampling (25,000, 50,000,
alpha 5,000); PredRNN++ names a one-cycle schedule. Training settings those files leave to
OpenSTL's defaults are taken from our ConvLSTM recipe (configs/forecast_mfmnist_convlstm.py):
batch 16, Adam at 5e-4, one cycle, 200 epochs. Moving MNIST itself is not available offline
here; `moving_fashion_seq` is the same protocol on Fashion-MNIST. Published figures (OpenSTL's
Moving MNIST table): PredRNN MSE 25.04 / SSIM 0.944, PredRNN++ 22.45 / 0.950, PredRNN-V2
27.73 / 0.937. Not run here (a train step is several TFLOP).
"""

from configs import forecast_mfmnist_convlstm

MODELS = ("predrnn", "predrnn_v2", "predrnn_pp")


def get_config(model: str = "predrnn"):
  if model not in MODELS:
    raise ValueError(f"choose one of {MODELS}, got {model!r}")
  config = forecast_mfmnist_convlstm.get_config()
  config.model.name = model
  if model == "predrnn_v2":
    config.model.decouple_beta = 0.1
    config.forecast.reverse_sampling = True
    config.forecast.r_sampling_step_1 = 25_000
    config.forecast.r_sampling_step_2 = 50_000
    config.forecast.r_exp_alpha = 5000.0
  return config

"""The PredRNN family on moving_digits_seq, CPU-sized (configs/forecast_moving_digits.py's data,
patches and optimizer):

    --config=configs/forecast_moving_digits_predrnn.py:predrnn   (or :predrnn_v2, :predrnn_pp)

Two layers of 32 features, 3x3 kernels, 4x4 patches of 32x32 frames. The sampling schedules are
OpenSTL's, shrunk to this run's 1,500 updates: scheduled sampling falls from 1 by 1/1,000 per
update; PredRNN-V2's reverse schedule runs between updates 300 and 1,000 (alpha 200) with
decouple_beta 0.1 (OpenSTL's: 25,000, 50,000, 5,000 of 125,000 updates).
"""

from configs import forecast_moving_digits

MODELS = ("predrnn", "predrnn_v2", "predrnn_pp")


def get_config(model: str = "predrnn"):
  if model not in MODELS:
    raise ValueError(f"choose one of {MODELS}, got {model!r}")
  config = forecast_moving_digits.get_config()
  config.model.name = model
  config.forecast.sampling_start = 1.0
  config.forecast.sampling_decay = 1e-3
  config.forecast.sampling_stop_step = 1000
  if model == "predrnn_v2":
    config.model.decouple_beta = 0.1
    config.forecast.reverse_sampling = True
    config.forecast.r_sampling_step_1 = 300
    config.forecast.r_sampling_step_2 = 1000
    config.forecast.r_exp_alpha = 200.0
  return config

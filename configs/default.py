"""Every config field of dcrn_jax, with its default. Experiment configs import this and override.

The returned config is locked: assigning a key that is not defined here (in a config file or with
`--config.some.key=value` on the command line) is an error that names the valid keys, and a value
of the wrong type is refused. Add a field here first if an experiment needs a new one.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.seed = 0  # All randomness (init, data order, dropout) derives from it.
  config.batch_size = 32  # Global batch: split over every device of every process.
  config.eval_batch_size = 64  # Global; the last partial batch is padded and masked.
  config.num_train_steps = 1000
  config.log_every_steps = 50
  config.eval_every_steps = 500  # 0: evaluate only at the end.
  config.checkpoint_every_steps = 250
  config.max_checkpoints_to_keep = 3
  # True: write checkpoints in the background while training goes on (for large models), at the
  # price that a kill during a write falls back one more checkpoint. False: a kill never costs
  # more than checkpoint_every_steps steps.
  config.async_checkpointing = False
  # --mode=eval restores this checkpoint: "latest" (or -1), "best" (the best by best_metric among
  # those kept), or a step number. Typed `object` so that it takes a word or a number.
  config.eval_checkpoint_step = config_dict.FieldReference("latest", field_type=object)
  config.label_smoothing = 0.0
  # A step whose loss or gradient norm is NaN/Inf is never applied. "stop": end the run with an
  # error naming that step and the last good checkpoint; "skip": go on and count such steps.
  config.on_nonfinite = "stop"
  config.progress_bar = True  # A live line on a terminal; periodic lines otherwise.
  # "classify": a label per example (the models of dcrn_jax/models/classifiers.py). "forecast":
  # the first data.input_frames frames of a sequence in, the next data.output_frames out
  # (convlstm_forecaster, convlstm_autoregressive; any clip dataset, labels unused).
  config.task = "classify"

  # Durations in epochs (dcrn_jax/durations.py): each is the alternative to the *_steps field of
  # the same name, converted to steps once before training from the train split's size and the
  # examples per update (batch_size x optim.accumulate_steps); the result is printed. Exactly one
  # of num_train_steps and num_epochs is > 0; a periodic action is given in steps or in epochs,
  # not both (0 = not given this way). Fractions are fine (eval_every_epochs=0.5).
  config.num_epochs = 0.0
  config.log_every_epochs = 0.0
  config.eval_every_epochs = 0.0
  config.checkpoint_every_epochs = 0.0
  # Keep the best checkpoint too: the eval metric that ranks checkpoints (e.g. "accuracy",
  # "loss"; its direction comes from evaluation.METRIC_DIRECTIONS). Every evaluation then saves
  # a checkpoint, and the best one is kept besides the latest max_checkpoints_to_keep; "" = off.
  config.best_metric = ""

  config.model = ml_collections.ConfigDict()
  # One of: cnn, cnn_gru, cnn_lstm, convlstm, row_lstm (see dcrn_jax/models/classifiers.py).
  config.model.name = "cnn_gru"
  config.model.conv_features = (16, 32, 64)  # One 3x3 conv + 2x2 max-pool block per entry.
  config.model.convs_per_block = 1
  config.model.embed_dim = 128  # Dense projection of each frame's feature map (0: none).
  config.model.hidden_size = 128  # GRU/LSTM state size (per layer).
  config.model.num_layers = 1  # Stacked recurrent layers.
  config.model.convlstm_features = (32, 32)  # One ConvLSTM layer per entry.
  config.model.convlstm_kernel = 3
  # A conv of this stride (and kernel) that shrinks frames first; 1: none (the ConvLSTM model
  # always has a stem conv, of stride 1 then). Encoders give it conv_features[0] channels.
  config.model.stem_stride = 1
  config.model.head_hidden = 0  # Hidden dense layer in the classifier head (0: none).
  config.model.dropout = 0.0
  config.model.batch_norm = False
  config.model.dtype = "float32"  # Compute dtype: float32 or bfloat16 (parameters stay float32).
  # Forecasters: p x p patches of a frame become one position of p*p*C channels (OpenSTL's
  # reshape_patch); 1: none. The ConvLSTM layers are model.convlstm_features/convlstm_kernel.
  config.model.patch_size = 1
  # PredRNN-V2 only (model.name=predrnn_v2): weight of the memory decoupling loss (OpenSTL's
  # Moving MNIST recipe: 0.1); 0 on every other model.
  config.model.decouple_beta = 0.0

  config.data = ml_collections.ConfigDict()
  # moving_digits or moving_fashion (ours, offline), any TFDS image or video dataset such as
  # cifar10, fashion_mnist or ucf101, video_folder (files under data.video_dir), or synthetic.
  config.data.name = "moving_digits"
  config.data.data_dir = ""  # TFDS data dir; empty: TFDS's default (~/tensorflow_datasets).
  # TFDS manual_dir. fashion_mnist and moving_fashion read Fashion-MNIST's idx files from it;
  # empty: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package).
  config.data.manual_dir = ""
  # video_folder: the folder of the videos (*.mp4, .avi, .mkv, .webm), decoded with PyAV (a
  # dependency of dcrn_jax, installed with it); train_split / eval_split name two of its splits.
  config.data.video_dir = ""
  # video_folder layouts (dcrn_jax/media/video_layouts.py), all resolved to (file, label, split):
  # split_format "folders": <video_dir>/<split>/<class>/*, or with eval_fraction in (0, 1)
  # <video_dir>/<class>/* split by a hash of each file's path (UCF101 groups kept together).
  # "ucf101" (classInd.txt, trainlist0N/testlist0N.txt), "hmdb51" (<class>_test_splitN.txt), both
  # with `split` 1-3; "kinetics_csv" (label,youtube_id,time_start,time_end,split); "list"
  # ("path label" lines, one file per split: <split_lists>/<split>.txt or a path with {split}).
  # split_lists: the folder or file of those lists; class_names_file ("list" only): one class
  # name per line, line i naming label i.
  config.data.split_format = "folders"
  config.data.split_lists = ""
  config.data.split = 1
  config.data.eval_fraction = 0.0
  config.data.class_names_file = ""
  # video_folder, decoded with PyAV: seek to the keyframe before a clip (frame i at time
  # i / frame rate) instead of decoding from the start; False for variable-frame-rate files.
  config.data.video_seek = True
  # video_folder from shards: True decodes every video once (on first use, or with `python -m
  # dcrn_jax.prepare --config=...`) into JPEG frames at a shorter side of resize_short (0:
  # image_size) in ArrayRecord shards under data_dir/video_shards/, and reads only each clip's
  # frames from them. jpeg_quality: 1-100; prepare_workers: videos decoded at a time (threads;
  # 0: one per core).
  config.data.video_cache = False
  config.data.jpeg_quality = 90
  config.data.prepare_workers = 0
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.shuffle_buffer = 10_000
  config.data.prefetch_batches = 2  # Global batches a background thread keeps ready (>= 0).
  # Device-resident splits (dcrn_jax/feeding.py): a split read once as uint8 pixels into device
  # memory, sharded over the devices; each step then receives only its rows' indices and
  # gathers them on the device (the same batches as streaming, bit for bit). "auto": every
  # split that can and fits; True: an error if one cannot (say which, and why); False: stream
  # uint8 batches from the host. Stored clips and TFDS images can; videos (cut at random) and
  # the *_seq training sequences (new every epoch) cannot. Resident images are augmented on the
  # device (crop, flip; rotation only in tf.data) with a random stream of their own.
  config.data.on_device = config_dict.FieldReference("auto", field_type=object)
  # Bytes of each device's memory the resident splits may take: "auto" = a quarter of it (of
  # the RAM per device on CPU), or a positive number; train has the first claim.
  config.data.on_device_max_bytes = config_dict.FieldReference("auto", field_type=object)
  # True: each process reads only its own part of every split (what scales; the order then
  # depends on the number of processes). False: every process reads the whole global stream and
  # keeps its rows of each global batch, so batches do not depend on the process count.
  config.data.shard_by_process = True
  # moving_digits, moving_fashion: clip shape and content (each combination is prepared once
  # into data_dir). Videos: num_frames and image_size are the clip shape too.
  config.data.num_frames = 10
  config.data.image_size = 64
  config.data.num_digits = 1
  config.data.num_train_examples = 8000
  config.data.num_test_examples = 1000
  # Videos (video_folder, TFDS videos): clips of num_frames frames `frame_stride` apart, frames
  # resized so the shorter side is resize_short (0: image_size), then cropped to image_size
  # (random window for training, centre for eval). Eval scores num_test_clips evenly spaced
  # clips x num_test_crops windows (1 or 3) of every video and averages them per video.
  config.data.frame_stride = 1
  config.data.resize_short = 0
  config.data.num_test_clips = 1
  config.data.num_test_crops = 1
  # Training augmentation of TFDS images (none at eval): zero padding then a random crop back to
  # size, a random left-right flip (also for videos), a random rotation of up to this angle.
  # Stored clips (moving_digits/moving_fashion) are never augmented: a flip would change the
  # direction a digit moves, which is moving_digits' label.
  config.data.augment_crop_padding = 0
  config.data.augment_flip = False
  config.data.augment_rotation_degrees = 0.0
  # Per-channel (x - mean) / std of inputs in [0, 1], at train and eval; empty: none.
  config.data.normalize_mean = ()
  config.data.normalize_std = ()
  # synthetic: random inputs of this shape, nothing read from disk (for timing on any machine).
  config.data.synthetic_shape = (10, 64, 64, 1)
  config.data.synthetic_num_classes = 8
  config.data.synthetic_num_examples = 1024
  # task="forecast": frames in and frames predicted; data.num_frames must be their sum.
  # moving_fashion_seq / moving_digits_seq draw data.num_digits items per sequence, and
  # num_train_examples fresh sequences per epoch; their test set is num_test_examples fixed ones.
  config.data.input_frames = 10
  config.data.output_frames = 10

  config.optim = ml_collections.ConfigDict()
  config.optim.optimizer = "adam"  # adam, adamw, sgd, rmsprop
  config.optim.learning_rate = 1e-3  # Peak learning rate.
  # constant, cosine, warmup_cosine, piecewise, onecycle (PyTorch's OneCycleLR as OpenSTL uses
  # it: from learning_rate/25 up to learning_rate over 30 % of the run, then down to /25e4).
  config.optim.schedule = "warmup_cosine"
  config.optim.warmup_steps = 50
  config.optim.end_lr_factor = 0.0  # Cosine ends at learning_rate * end_lr_factor.
  config.optim.boundaries = ()  # piecewise: steps at which the rate is multiplied by `decay_factor`.
  config.optim.decay_factor = 0.1
  config.optim.momentum = 0.9  # sgd (Nesterov off) and rmsprop.
  config.optim.weight_decay = 0.0  # Decoupled for adamw; L2 added to gradients otherwise.
  config.optim.grad_clip_norm = 1.0  # Global-norm clipping; 0 disables it.
  # Gradient accumulation: each update averages the gradients of this many micro-batches of
  # batch_size (optax.MultiSteps); steps, schedules and *_every_steps count updates. 1 = off.
  config.optim.accumulate_steps = 1
  # An exponential moving average of the parameters, updated after every update and kept in the
  # checkpoints; 0 = off, e.g. 0.999. With ema_eval, evaluation (and predict, export) use the
  # averaged weights; during training both are evaluated and logged (split test_ema).
  config.optim.ema_decay = 0.0
  config.optim.ema_eval = True

  # task="forecast" only.
  config.forecast = ml_collections.ConfigDict()
  config.forecast.l1_weight = 0.0  # Loss: per-pixel MSE + l1_weight x mean absolute error.
  # Scheduled sampling (convlstm_autoregressive, OpenSTL's rule): at update s (0-based), each
  # step after the input frames reads the true frame with probability
  # max(sampling_start - sampling_decay * (s + 1), 0), and from sampling_stop_step on never;
  # evaluation always feeds the model its own predictions.
  config.forecast.sampling_start = 1.0
  config.forecast.sampling_decay = 2e-5
  config.forecast.sampling_stop_step = 50_000
  # Reverse scheduled sampling (predrnn_v2 only; models/sampling.py): the input steps too may
  # read the model's own prediction, the true frame's probability rising from 0.5 to 1 between
  # updates r_sampling_step_1 and r_sampling_step_2 (time constant r_exp_alpha) while the
  # forecast steps' falls from 0.5 to 0; replaces the schedule above. OpenSTL's constants.
  config.forecast.reverse_sampling = False
  config.forecast.r_sampling_step_1 = 25_000
  config.forecast.r_sampling_step_2 = 50_000
  config.forecast.r_exp_alpha = 5000.0
  # Test sequences drawn in WORKDIR/forecast_examples.png and as GIFs by --mode=eval (0: none).
  config.forecast.num_shown = 4

  config.lock()
  return config

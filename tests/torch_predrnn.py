"""PyTorch PredRNN and PredRNN++ written from the papers' equations, one tensor per weight of
the paper (W_xi, W_hi, ...), for the equality tests (tests/test_predrnn.py).

Wang et al., NeurIPS 2017 (ST-LSTM, eqs. 3-4) and ICML 2018 (causal LSTM, eq. 1; GHU, eq. 2);
the equations are repeated in dcrn_jax/models/predrnn.py's docstring. Weights come from the
project's fused kernels through `paper_weights`, which names which slice of which parameter
each paper weight is, so gradients can be compared slice by slice.
"""

import numpy as np
import torch
import torch.nn.functional as F

# Paper weight -> (parameter, gate index, number of gates) in the JAX cell's parameters.
ST_LSTM = {
    "W_xi": ("input_kernel", 0, 7), "W_xf": ("input_kernel", 1, 7), "W_xg": ("input_kernel", 2, 7),
    "W'_xi": ("input_kernel", 3, 7), "W'_xf": ("input_kernel", 4, 7),
    "W'_xg": ("input_kernel", 5, 7), "W_xo": ("input_kernel", 6, 7),
    "b_i": ("bias", 0, 7), "b_f": ("bias", 1, 7), "b_g": ("bias", 2, 7), "b'_i": ("bias", 3, 7),
    "b'_f": ("bias", 4, 7), "b'_g": ("bias", 5, 7), "b_o": ("bias", 6, 7),
    "W_hi": ("hidden_kernel", 0, 4), "W_hf": ("hidden_kernel", 1, 4),
    "W_hg": ("hidden_kernel", 2, 4), "W_ho": ("hidden_kernel", 3, 4),
    "W_mi": ("memory_kernel", 0, 3), "W_mf": ("memory_kernel", 1, 3),
    "W_mg": ("memory_kernel", 2, 3),
    "W_o[C,M]": ("output_kernel", 0, 1), "W_11": ("fuse_kernel", 0, 1),
}
# Causal LSTM: W_1 = [x; h; c] -> (g, i, f), W_2 = [x; c_t; m] -> (g', i', f'), W_3, W_4 =
# [x; c_t; m_t] -> o, W_5 (1 x 1); the blocks of each are separate tensors here.
CAUSAL = {
    "W1_x": ("input_kernel", 0, 7 / 3), "W2_x": ("input_kernel", 1, 7 / 3),
    "W4_x": ("input_kernel", 6, 7),
    "b1": ("bias", 0, 7 / 3), "b2": ("bias", 1, 7 / 3), "b4": ("bias", 6, 7),
    "W1_h": ("hidden_kernel", 0, 1), "W1_c": ("cell_kernel", 0, 1),
    "W2_m": ("memory_kernel", 0, 1), "W2_c": ("cell_memory_kernel", 0, 1),
    "W3": ("memory_in_kernel", 0, 1), "W4_cm": ("output_kernel", 0, 1), "W5": ("fuse_kernel", 0, 1),
}
GHU = {"W_px": ("input_kernel", 0, 2), "W_sx": ("input_kernel", 1, 2),
       "W_pz": ("state_kernel", 0, 2), "W_sz": ("state_kernel", 1, 2),
       "b_p": ("bias", 0, 2), "b_s": ("bias", 1, 2)}


def slice_of(array, index, gates):
  """The block of the last axis that a paper weight is: gate `index` of `gates` equal blocks;
  a fractional `gates` (7/3) means blocks of 3 gates out of 7 (W1 then W2 of the causal cell)."""
  n = array.shape[-1]
  if gates == 7 / 3:
    f = n // 7
    return array[..., index * 3 * f:(index + 1) * 3 * f]
  f = n // int(gates)
  return array[..., index * f:(index + 1) * f]


def paper_weights(params, table):
  """{paper name: torch tensor (requires_grad)} from one JAX cell's parameters; kernels become
  torch's (out, in, kh, kw)."""
  out = {}
  for name, (param, index, gates) in table.items():
    a = np.asarray(slice_of(np.asarray(params[param]), index, gates), np.float32)
    if a.ndim == 4:
      a = a.transpose(3, 2, 0, 1)
    out[name] = torch.tensor(np.ascontiguousarray(a), requires_grad=True)
  return out


def _conv(x, w):
  return F.conv2d(x, w, padding=w.shape[-1] // 2)


def _b(v):
  return v[None, :, None, None]


def st_lstm(w, x, c, h, m):
  """Eqs. 3-4 of PredRNN on NCHW tensors: -> (c, h, m)."""
  i = torch.sigmoid(_conv(x, w["W_xi"]) + _conv(h, w["W_hi"]) + _b(w["b_i"]))
  f = torch.sigmoid(_conv(x, w["W_xf"]) + _conv(h, w["W_hf"]) + _b(w["b_f"]))
  g = torch.tanh(_conv(x, w["W_xg"]) + _conv(h, w["W_hg"]) + _b(w["b_g"]))
  c = f * c + i * g
  i2 = torch.sigmoid(_conv(x, w["W'_xi"]) + _conv(m, w["W_mi"]) + _b(w["b'_i"]))
  f2 = torch.sigmoid(_conv(x, w["W'_xf"]) + _conv(m, w["W_mf"]) + _b(w["b'_f"]))
  g2 = torch.tanh(_conv(x, w["W'_xg"]) + _conv(m, w["W_mg"]) + _b(w["b'_g"]))
  m = f2 * m + i2 * g2
  cm = torch.cat([c, m], 1)
  o = torch.sigmoid(_conv(x, w["W_xo"]) + _conv(h, w["W_ho"]) + _conv(cm, w["W_o[C,M]"]) +
                    _b(w["b_o"]))
  return c, o * torch.tanh(_conv(cm, w["W_11"])), m


def causal_lstm(w, x, c, h, m):
  """Eq. 1 of PredRNN++ on NCHW tensors: -> (c, h, m)."""
  g, i, f = torch.chunk(_conv(x, w["W1_x"]) + _conv(h, w["W1_h"]) + _conv(c, w["W1_c"]) +
                        _b(w["b1"]), 3, 1)
  c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
  g2, i2, f2 = torch.chunk(_conv(x, w["W2_x"]) + _conv(c, w["W2_c"]) + _conv(m, w["W2_m"]) +
                           _b(w["b2"]), 3, 1)
  m = torch.sigmoid(f2) * torch.tanh(_conv(m, w["W3"])) + torch.sigmoid(i2) * torch.tanh(g2)
  cm = torch.cat([c, m], 1)
  o = torch.tanh(_conv(x, w["W4_x"]) + _conv(cm, w["W4_cm"]) + _b(w["b4"]))
  return c, o * torch.tanh(_conv(cm, w["W5"])), m


def ghu(w, x, z):
  """Eq. 2 of PredRNN++: -> Z_t."""
  p = torch.tanh(_conv(x, w["W_px"]) + _conv(z, w["W_pz"]) + _b(w["b_p"]))
  s = torch.sigmoid(_conv(x, w["W_sx"]) + _conv(z, w["W_sz"]) + _b(w["b_s"]))
  return s * p + (1 - s) * z


def predrnn(cells, head, frames, use_true, cell, highway=None, highway_step=None):
  """The stacked model over NCHW frames (B, K, C, H, W) with use_true (B, K): zigzag M, and for
  PredRNN++ the GHU (`highway_step`, default `ghu`) between layers 0 and 1. Returns predictions
  (B, K, C, H, W)."""
  b, k, _, hh, ww = frames.shape
  feats = head[0].shape[1]
  zeros = torch.zeros(b, feats, hh, ww)
  states = [(zeros, zeros) for _ in cells]
  m, z, previous, outs = zeros, zeros, torch.zeros_like(frames[:, 0]), []
  for t in range(k):
    u = use_true[:, t, None, None, None]
    x = u * frames[:, t] + (1 - u) * previous
    for i, w in enumerate(cells):
      c, h = states[i]
      c, h, m = cell(w, x, c, h, m)
      states[i] = (c, h)
      x = h
      if i == 0 and highway is not None:
        z = (highway_step or ghu)(highway, h, z)
        x = z
    previous = _conv(x, head[0]) + _b(head[1])
    outs.append(previous)
  return torch.stack(outs, 1)


# The fused forms: one convolution per input, as the project's cells (and OpenSTL's) compute them,
# on weights taken whole from the JAX parameters. They are what benchmarks/bench_forecast.py
# times in PyTorch (23 separate small convolutions per cell would handicap it); the test checks
# them against the paper forms above.

def fused_weights(params):
  """{JAX parameter name: torch tensor (requires_grad)} of one cell or GHU; kernels become
  torch's (out, in, kh, kw)."""
  out = {}
  for name, value in params.items():
    a = np.asarray(value, np.float32)
    out[name] = torch.tensor(np.ascontiguousarray(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a),
                             requires_grad=True)
  return out


def st_lstm_fused(w, x, c, h, m):
  """`st_lstm` with one convolution per input (gates in the JAX parameters' order)."""
  xi, xf, xg, xi2, xf2, xg2, xo = torch.chunk(_conv(x, w["input_kernel"]) + _b(w["bias"]), 7, 1)
  hi, hf, hg, ho = torch.chunk(_conv(h, w["hidden_kernel"]), 4, 1)
  mi, mf, mg = torch.chunk(_conv(m, w["memory_kernel"]), 3, 1)
  c = torch.sigmoid(xf + hf) * c + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
  m = torch.sigmoid(xf2 + mf) * m + torch.sigmoid(xi2 + mi) * torch.tanh(xg2 + mg)
  cm = torch.cat([c, m], 1)
  o = torch.sigmoid(xo + ho + _conv(cm, w["output_kernel"]))
  return c, o * torch.tanh(_conv(cm, w["fuse_kernel"])), m


def causal_lstm_fused(w, x, c, h, m):
  """`causal_lstm` with one convolution per input."""
  xg, xi, xf, xg2, xi2, xf2, xo = torch.chunk(_conv(x, w["input_kernel"]) + _b(w["bias"]), 7, 1)
  hg, hi, hf = torch.chunk(_conv(h, w["hidden_kernel"]) + _conv(c, w["cell_kernel"]), 3, 1)
  c = torch.sigmoid(xf + hf) * c + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
  mg, mi, mf = torch.chunk(_conv(m, w["memory_kernel"]) + _conv(c, w["cell_memory_kernel"]), 3, 1)
  m = (torch.sigmoid(xf2 + mf) * torch.tanh(_conv(m, w["memory_in_kernel"])) +
       torch.sigmoid(xi2 + mi) * torch.tanh(xg2 + mg))
  cm = torch.cat([c, m], 1)
  o = torch.tanh(xo + _conv(cm, w["output_kernel"]))
  return c, o * torch.tanh(_conv(cm, w["fuse_kernel"])), m


def ghu_fused(w, x, z):
  """`ghu` with one convolution per input."""
  p, s = torch.chunk(_conv(x, w["input_kernel"]) + _conv(z, w["state_kernel"]) + _b(w["bias"]),
                     2, 1)
  s = torch.sigmoid(s)
  return s * torch.tanh(p) + (1 - s) * z

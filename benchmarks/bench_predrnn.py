"""Train step of `predrnn` (ours, jit) against a PyTorch eager PredRNN with fused gate
convolutions (one convolution per input: x -> 7F, h -> 4F, m -> 3F, [C, M] -> F, 1x1), on the same
shapes, timed round robin (one step of each in turn), after warm-up.

    python benchmarks/bench_predrnn.py --batch 4 --rounds 3
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from dcrn_jax.models.predrnn import PredRNN


def torch_model(feats, layers, chans, k):
  g = torch.Generator().manual_seed(0)
  w = lambda *s: (torch.randn(*s, generator=g) * 0.05).requires_grad_()
  cells = [dict(x=w(7 * feats, chans if i == 0 else feats, k, k), b=w(7 * feats),
                h=w(4 * feats, feats, k, k), m=w(3 * feats, feats, k, k),
                o=w(feats, 2 * feats, k, k), f=w(feats, 2 * feats, 1, 1)) for i in range(layers)]
  head = w(chans, feats, 1, 1)
  return cells, head


def torch_step(cells, head, frames, feats, k):
  b, t, _, hh, ww = frames.shape
  zeros = torch.zeros(b, feats, hh, ww)
  states = [(zeros, zeros) for _ in cells]
  m, outs, p = zeros, [], k // 2
  for s in range(t - 1):
    x = frames[:, s]
    for i, w in enumerate(cells):
      c, h = states[i]
      xi, xf, xg, xi2, xf2, xg2, xo = torch.chunk(F.conv2d(x, w["x"], w["b"], padding=p), 7, 1)
      hi, hf, hg, ho = torch.chunk(F.conv2d(h, w["h"], padding=p), 4, 1)
      mi, mf, mg = torch.chunk(F.conv2d(m, w["m"], padding=p), 3, 1)
      c = torch.sigmoid(xf + hf) * c + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
      m = torch.sigmoid(xf2 + mf) * m + torch.sigmoid(xi2 + mi) * torch.tanh(xg2 + mg)
      cm = torch.cat([c, m], 1)
      h = torch.sigmoid(xo + ho + F.conv2d(cm, w["o"], padding=p)) * torch.tanh(
          F.conv2d(cm, w["f"]))
      states[i] = (c, h)
      x = h
    outs.append(F.conv2d(x, head))
  loss = ((torch.stack(outs, 1) - frames[:, 1:]) ** 2).mean()
  loss.backward()
  return loss.item()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--size", type=int, default=8)  # Map size after patches (32x32, patch 4).
  ap.add_argument("--chans", type=int, default=16)
  ap.add_argument("--feats", type=int, default=32)
  ap.add_argument("--frames", type=int, default=20)
  a = ap.parse_args()
  t_in = a.frames // 2
  model = PredRNN(output_frames=a.frames - t_in, features=(a.feats, a.feats))
  seq = jax.random.uniform(jax.random.key(0), (a.batch, a.frames, a.size, a.size, a.chans))
  params = model.init(jax.random.key(1), seq[:, :t_in])["params"]
  ones = jnp.ones((a.batch, a.frames - t_in - 1))

  @jax.jit
  def step(p):
    def loss(p):
      out = model.apply({"params": p}, seq[:, :t_in], targets=seq[:, t_in:], teacher_forcing=ones)
      return jnp.mean((out - seq[:, 1:]) ** 2)
    return jax.value_and_grad(loss)(p)

  cells, head = torch_model(a.feats, 2, a.chans, 3)
  frames = torch.tensor(np.asarray(seq).transpose(0, 1, 4, 2, 3).copy())
  t0 = time.perf_counter()
  jax.block_until_ready(step(params))
  print(f"ours: compile + first step {time.perf_counter() - t0:.1f} s")
  torch_step(cells, head, frames, a.feats, 3)
  times = {"ours (jit)": [], "PyTorch eager": []}
  for _ in range(a.rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(step(params))
    times["ours (jit)"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    torch_step(cells, head, frames, a.feats, 3)
    times["PyTorch eager"].append(time.perf_counter() - t0)
  for name, ts in times.items():
    print(f"{name}: median {1000 * np.median(ts):.1f} ms per train step ({a.rounds} rounds)")
  print(f"PyTorch / ours: {np.median(times['PyTorch eager']) / np.median(times['ours (jit)']):.2f}")


if __name__ == "__main__":
  main()

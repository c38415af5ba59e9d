"""Reference side of bench/compare.sh: times masked-LM training of a stock
Hugging Face `BertForMaskedLM` on synthetic data and prints one JSON object.

It answers one question: how many tokens per second does plain PyTorch +
transformers train at, for the same shape, precision and step as
`bertlab bench`? Choices made so the comparison is fair:

- Built from `BertConfig` (no download), SDPA attention, dropout on, train
  mode: the same post-LN BERT (GELU, LayerNorm eps 1e-12, 512 positions,
  decoder tied to the word embeddings) as bertlab's `bert` model.
- Full-length random sequences of ids in [5, vocab) (ids 0-4 play
  [PAD] [UNK] [CLS] [SEP] [MASK]), so no padding and no attention mask:
  neither side pays for masking attention.
- Masking is redone every step (dynamic, 80/10/10 of `mask_prob` of the
  positions, labels -100 elsewhere) with torch ops on the device, so data
  preparation costs next to nothing and the timing is the model's.
- The loss is stock `model(...).loss`: the MLM head runs over every position,
  as transformers does. bertlab runs it only at masked positions; that
  difference is part of what is being measured, and `mlm_head` says so.
- bf16: autocast with fp32 master weights; fp16: autocast + GradScaler.
- Global-norm clipping at 1.0 and AdamW (betas 0.9/0.999, eps 1e-6, decay
  0.01, biases and LayerNorm not decayed, as in bertlab), fused when the
  device allows it, else foreach (`optimizer` says which).
- Warm-up steps are untimed; the timed steps are bracketed by one device
  synchronisation each side and never read the loss inside the loop.
"""
import argparse
import contextlib
import json
import resource
import time

import torch
import transformers
from transformers import BertConfig, BertForMaskedLM

MASK_ID, FIRST_REAL_ID = 4, 5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, help="default 4 * hidden")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--mask-prob", type=float, default=0.15)
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return a


def mask_tokens(ids, mask_prob, vocab):
    """BERT's 80/10/10 rule: of the selected positions 80% become [MASK],
    10% a random real token, 10% stay; only selected positions are labelled."""
    selected = torch.rand(ids.shape, device=ids.device) < mask_prob
    labels = torch.where(selected, ids, -100)
    roll = torch.rand(ids.shape, device=ids.device)
    inputs = torch.where(selected & (roll < 0.8), MASK_ID, ids)
    random_ids = torch.randint_like(ids, FIRST_REAL_ID, vocab)
    inputs = torch.where(selected & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
    return inputs, labels


def make_optimizer(model, lr):
    named = list(model.named_parameters())
    no_decay = lambda name: name.endswith("bias") or "LayerNorm" in name
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    kwargs = dict(lr=lr, betas=(0.9, 0.999), eps=1e-6)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs), "adamw fused"
    except (RuntimeError, ValueError) as refused:
        return torch.optim.AdamW(groups, foreach=True, **kwargs), f"adamw foreach (fused refused: {refused})"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with open("/proc/cpuinfo") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return models[0] if models else "unknown cpu"


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    config = BertConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        intermediate_size=a.intermediate or 4 * a.hidden,
        hidden_dropout_prob=a.dropout,
        attention_probs_dropout_prob=a.dropout,
        max_position_embeddings=max(512, a.seq),
        attn_implementation="sdpa",
    )
    model = BertForMaskedLM(config).to(device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    optimizer, optimizer_note = make_optimizer(model, a.lr)
    forward = torch.compile(model) if a.compile else model

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type) if a.precision == "fp16" else None

    ids = torch.randint(FIRST_REAL_ID, a.vocab, (a.batch, a.seq), device=device)
    token_type_ids = torch.zeros_like(ids)

    def step():
        inputs, labels = mask_tokens(ids, a.mask_prob, a.vocab)
        with autocast():
            loss = forward(input_ids=inputs, token_type_ids=token_type_ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(a.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({
        "impl": "transformers+compile" if a.compile else "transformers",
        "tokens_per_s": a.batch * a.seq * a.steps / elapsed,
        "step_ms": 1000 * elapsed / a.steps,
        "peak_memory_bytes": peak,
        "final_loss": loss.item(),
        "device": device.type,
        "device_name": device_name(device),
        "precision": a.precision,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "params": params,
        "steps": a.steps,
        "batch": a.batch,
        "seq": a.seq,
        "optimizer": optimizer_note,
        "mlm_head": "all positions",
    }))


if __name__ == "__main__":
    main()

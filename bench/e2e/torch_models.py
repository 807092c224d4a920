"""The three benchmark models written as PyTorch functions over the weights of the same ONNX files
(read by initializer name), the way a PyTorch user would write them: F.linear on nn.Linear-layout
weights (bias fused into the GEMM), F.conv2d with bias, F.layer_norm, GELU(tanh). Attention is
softmax(q k^T * scale + causal mask) v, as GPT-2's eager attention; `sdpa=True` uses
F.scaled_dot_product_attention(is_causal=True) instead (the fused kernels; used for the TF32
column, where PyTorch may pick its fastest path). Imported only where torch is installed."""

import torch
import torch.nn.functional as F

from .models import GPT2, RESNET18_STAGES


def _tensors(weights: dict, device) -> dict:
    return {k: torch.from_numpy(v.copy()).to(device) for k, v in weights.items() if v.dtype.kind == "f"}


def mlp(weights: dict, device):
    w = _tensors(weights, device)
    layers = [(w[f"w{i}"].t().contiguous(), w[f"b{i}"]) for i in range(len(w) // 2)]   # nn.Linear: [out, in]

    def run(x):
        for i, (wt, b) in enumerate(layers):
            x = F.linear(x, wt, b)
            if i < len(layers) - 1:
                x = F.relu(x)
        return x
    return run


def resnet18(weights: dict, device):
    w = _tensors(weights, device)

    def conv(x, name, stride):
        k = w[f"{name}.w"].shape[-1]
        return F.conv2d(x, w[f"{name}.w"], w[f"{name}.b"], stride=stride, padding=k // 2)

    def run(x):
        x = F.max_pool2d(F.relu(conv(x, "conv1", 2)), 3, 2, 1)
        for s, (_, stride) in enumerate(RESNET18_STAGES, start=1):
            for blk in range(2):
                name, st = f"layer{s}.{blk}", stride if blk == 0 else 1
                y = conv(F.relu(conv(x, f"{name}.conv1", st)), f"{name}.conv2", 1)
                short = conv(x, f"{name}.down", st) if f"{name}.down.w" in w else x
                x = F.relu(y + short)
        return F.linear(x.mean(dim=(2, 3)), w["fc.w"], w["fc.b"])
    return run


def gpt2(weights: dict, device, sdpa: bool = False):
    w = _tensors(weights, device)
    d, heads, seq = GPT2["d"], GPT2["heads"], GPT2["seq"]
    dh = d // heads
    lin = {k[:-2]: (v.t().contiguous(), w[k[:-2] + ".b"]) for k, v in w.items() if k.endswith(".w") and v.dim() == 2}
    mask, scale = w["attn.mask"], float(1.0 / dh ** 0.5)

    def attention(q, k, v):
        if sdpa:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return torch.softmax(q @ k.transpose(-1, -2) * scale + mask, dim=-1) @ v

    def heads_of(t):
        return t.reshape(1, seq, heads, dh).transpose(1, 2)

    def run(x):
        for i in range(GPT2["blocks"]):
            h = F.layer_norm(x, (d,), w[f"h{i}.ln1.g"], w[f"h{i}.ln1.b"], 1e-5)
            q, k, v = F.linear(h, *lin[f"h{i}.attn.qkv"]).split(d, dim=-1)
            a = attention(heads_of(q), heads_of(k), heads_of(v)).transpose(1, 2).reshape(1, seq, d)
            x = x + F.linear(a, *lin[f"h{i}.attn.proj"])
            h = F.layer_norm(x, (d,), w[f"h{i}.ln2.g"], w[f"h{i}.ln2.b"], 1e-5)
            x = x + F.linear(F.gelu(F.linear(h, *lin[f"h{i}.mlp.fc"]), approximate="tanh"), *lin[f"h{i}.mlp.proj"])
        return F.layer_norm(x, (d,), w["ln_f.g"], w["ln_f.b"], 1e-5)
    return run


BUILDERS = {"mlp": mlp, "resnet18": resnet18, "gpt2": gpt2}


def set_tf32(on: bool) -> str:
    """Allow (or forbid) TF32 tensor-core math for float32 matmuls and convolutions; returns what
    torch reports afterwards, for the log."""
    try:   # the API of torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"
        return (f"cuda.matmul.fp32_precision={torch.backends.cuda.matmul.fp32_precision} "
                f"cudnn.conv.fp32_precision={torch.backends.cudnn.conv.fp32_precision}")
    except AttributeError:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        return f"cuda.matmul.allow_tf32={on} cudnn.allow_tf32={on}"

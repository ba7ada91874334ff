#!/usr/bin/python3
"""A small, independent PyTorch reference for the model and PEFT tests of webgpu-lora.

    /usr/bin/python3 test/torch/gpt2_ref.py job.json

Only torch and the standard library are used (no transformers, peft or safetensors package):
everything below is written from the definitions of Hugging Face transformers' modeling_gpt2.py
(GPT2LMHeadModel, GPT2ForSequenceClassification) and PEFT's LoRA (tuners/lora, utils/
save_and_load.py, config.py), so that the TypeScript library is checked against a second,
separately written implementation over the same files. It contains:

  * a safetensors reader (F64, F32, F16, BF16; validated like the reference implementation)
    and writer (F32/F64; entries sorted by name, compact JSON header padded with spaces to a
    multiple of 8 bytes, written to a temporary file and renamed);
  * GPT-2 built from an HF config.json, in float64 by default (a high-precision reference for
    f32 GPU results; "dtype": "float32" selectable), all dropout off;
  * LoRA as PEFT 0.20.0 does it on Conv1D and Linear modules, PEFT adapter directories read and
    written, HF model directories read and written;
  * a JSON job interface: forward (logits), grad (loss and gradients), train (AdamW / SGD steps).

The job format, the output names and every deliberate difference from transformers / PEFT are
documented in test/torch/README.md. A job file holds one job object or a list of them; a list
runs in order in one process (torch's start-up is paid once). Relative paths in a job are
relative to the job file's folder. On a bad job the script prints `gpt2_ref: <what>` to stderr
and exits with status 2; an unexpected failure prints a traceback and exits with status 1.
"""

import json
import math
import os
import re
import struct
import sys
import tempfile
import traceback

import torch
import torch.nn.functional as F

# PEFT's LoraConfig as version 0.20.0 (the latest release) writes it: every dataclass field of
# PeftConfigMixin, PeftConfig and LoraConfig with its default, less `runtime_config`, which
# LoraConfig.to_dict() drops. adapter_config.json holds exactly these keys.
PEFT_VERSION = "0.20.0"
LORA_CONFIG_DEFAULTS = {
    "task_type": None,
    "peft_type": "LORA",
    "auto_mapping": None,
    "peft_version": None,
    "base_model_name_or_path": None,
    "revision": None,
    "inference_mode": False,
    "r": 8,
    "target_modules": None,
    "exclude_modules": None,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "fan_in_fan_out": False,
    "bias": "none",
    "use_rslora": False,
    "modules_to_save": None,
    "init_lora_weights": True,
    "layers_to_transform": None,
    "layers_pattern": None,
    "rank_pattern": {},
    "alpha_pattern": {},
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "trainable_token_indices": None,
    "loftq_config": {},
    "eva_config": None,
    "corda_config": None,
    "lora_ga_config": None,
    "use_dora": False,
    "velora_config": None,
    "alora_invocation_tokens": None,
    "use_qalora": False,
    "qalora_group_size": 16,
    "monteclora_config": None,
    "layer_replication": None,
    "lora_bias": False,
    "target_parameters": None,
    "use_bdlora": None,
    "arrow_config": None,
    "ensure_weight_tying": False,
}
# Options that change what LoRA computes and that this reference does not implement: a config
# that sets one of them to something other than its default is refused rather than misread.
LORA_UNSUPPORTED = [
    "megatron_config", "trainable_token_indices", "eva_config", "corda_config", "lora_ga_config",
    "use_dora", "velora_config", "alora_invocation_tokens", "use_qalora", "monteclora_config",
    "layer_replication", "lora_bias", "target_parameters", "use_bdlora", "arrow_config",
    "ensure_weight_tying",
]
# PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["gpt2"], used when target_modules is null.
GPT2_DEFAULT_TARGETS = ["c_attn"]
# BaseTuner.inject_adapter condenses a target_modules list this long to minimal suffixes.
MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20
# PeftModelForSequenceClassification adds these to modules_to_save.
SEQ_CLS_MODULES_TO_SAVE = ["classifier", "score"]

ST_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
}
ST_NAMES = {torch.float64: "F64", torch.float32: "F32"}
ST_MAX_HEADER = 100_000_000


class JobError(Exception):
    """A bad job or a bad input file: reported as one line, exit status 2."""


def fail(msg):
    raise JobError(msg)


# In --serve mode each request's warnings are collected here and sent back with its answer.
WARNINGS = None


def warn(msg):
    if WARNINGS is not None:
        WARNINGS.append(msg)
    else:
        print(f"gpt2_ref: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# safetensors


def read_safetensors(path):
    """(tensors {name: tensor}, metadata {str: str} or None) of a safetensors file.

    Validated as the reference implementation does before anything is read: header length
    within the file and at most 100,000,000 bytes, a UTF-8 JSON object, no duplicate names,
    known dtypes, offsets sorted and contiguous from 0 and ending exactly at the end of the file,
    each tensor's byte length equal to product(shape) x dtype size."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    if len(buf) < 8:
        fail(f"{path}: not a safetensors file: {len(buf)} bytes, the 8-byte header length is missing")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > ST_MAX_HEADER:
        fail(f"{path}: safetensors header length {n} is over the limit of {ST_MAX_HEADER} bytes")
    if 8 + n > len(buf):
        fail(f"{path}: safetensors header length {n} runs past the end of the file ({len(buf)} bytes)")
    try:
        text = buf[8 : 8 + n].decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{path}: safetensors header is not UTF-8")

    def no_duplicates(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                fail(f"{path}: safetensors header names {k!r} twice")
            seen[k] = v
        return seen

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except ValueError as e:
        fail(f"{path}: safetensors header is not JSON: {e}")
    if not isinstance(header, dict):
        fail(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        fail(f"{path}: safetensors __metadata__ must map strings to strings, found {metadata!r}")
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            fail(f"{path}: tensor {name!r}: expected {{dtype, shape, data_offsets}}, found {info!r}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in ST_DTYPES:
            fail(f"{path}: tensor {name!r}: dtype {dtype!r} is not one of {sorted(ST_DTYPES)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            fail(f"{path}: tensor {name!r}: shape must be a list of non-negative integers, found {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        ):
            fail(f"{path}: tensor {name!r}: data_offsets must be [begin, end], found {offsets!r}")
        entries.append((offsets[0], offsets[1], name, dtype, shape))
    entries.sort()
    data = memoryview(buf)[8 + n :]
    expected_begin = 0
    tensors = {}
    for begin, end, name, dtype, shape in entries:
        if begin != expected_begin or end < begin:
            fail(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] do not continue at byte {expected_begin}")
        torch_dtype, size = ST_DTYPES[dtype]
        count = math.prod(shape)
        if count * size != end - begin:
            fail(f"{path}: tensor {name!r}: {dtype} {shape} needs {count * size} bytes, data_offsets give {end - begin}")
        expected_begin = end
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=torch_dtype) if count else torch.empty(0, dtype=torch_dtype)
        tensors[name] = t.reshape(shape).clone()
    if expected_begin != len(data):
        fail(f"{path}: tensor data ends at byte {expected_begin} but the file holds {len(data)} bytes of data")
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None, dtype=torch.float32):
    """Write {name: tensor} as `dtype` the way the safetensors library serialises: entries sorted
    by name (one dtype), compact JSON with __metadata__ first, header padded with spaces to a
    multiple of 8 bytes. Written to a temporary file in the same folder, then renamed."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(dtype).contiguous()
        raw = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_NAMES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    atomic_write(path, [struct.pack("<Q", len(text)), text] + chunks)


def atomic_write(path, chunks):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path) + "-")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c.encode("utf-8") if isinstance(c, str) else c)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path, what):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        fail(f"cannot read {what} {path}: {e.strerror}")
    except ValueError as e:
        fail(f"{what} {path} is not JSON: {e}")


# --------------------------------------------------------------------------------------------
# GPT-2 configuration, parameters and module names

ACTIVATIONS = {
    # transformers' ACT2FN entries; "gelu_new" (tanh approximation) is GPT-2's default
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu": F.gelu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


class GPT2Config:
    """The fields of an HF GPT2Config this model reads, with GPT2Config's defaults."""

    def __init__(self, raw, task, where):
        if not isinstance(raw, dict):
            fail(f"{where}: expected a JSON object")
        self.raw = raw

        def get(key, default, kind=int, minimum=None):
            v = raw.get(key, default)
            if v is None:
                return None
            if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
                fail(f"{where}: {key} must be an integer, found {v!r}")
            if kind is float and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                fail(f"{where}: {key} must be a number, found {v!r}")
            if kind is bool and not isinstance(v, bool):
                fail(f"{where}: {key} must be true or false, found {v!r}")
            if minimum is not None and v < minimum:
                fail(f"{where}: {key} must be at least {minimum}, found {v}")
            return v

        self.vocab_size = get("vocab_size", 50257, minimum=1)
        self.n_positions = get("n_positions", 1024, minimum=1)
        self.n_embd = get("n_embd", 768, minimum=1)
        self.n_layer = get("n_layer", 12, minimum=0)
        self.n_head = get("n_head", 12, minimum=1)
        n_inner = get("n_inner", None, minimum=1)
        self.n_inner = n_inner if n_inner is not None else 4 * self.n_embd
        self.eps = get("layer_norm_epsilon", 1e-5, kind=float)
        self.activation = raw.get("activation_function", "gelu_new")
        if self.activation not in ACTIVATIONS:
            fail(f"{where}: activation_function {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        self.scale_attn_weights = get("scale_attn_weights", True, kind=bool)
        self.scale_attn_by_inverse_layer_idx = get("scale_attn_by_inverse_layer_idx", False, kind=bool)
        # reorder_and_upcast_attn only changes the precision of the attention scores in mixed
        # precision; the arithmetic is the same, so it is accepted and has no effect here.
        self.tie = get("tie_word_embeddings", True, kind=bool)
        if get("add_cross_attention", False, kind=bool):
            fail(f"{where}: add_cross_attention is not supported by this reference")
        if self.n_embd % self.n_head:
            fail(f"{where}: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        self.pad_token_id = get("pad_token_id", None, minimum=0)
        self.task = task
        if task == "seq_cls":
            num_labels = raw.get("num_labels")
            if num_labels is None and isinstance(raw.get("id2label"), dict):
                num_labels = len(raw["id2label"])
            if num_labels is None:
                num_labels = 2  # PretrainedConfig's default
            if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 2:
                fail(f"{where}: num_labels must be an integer >= 2 (single-label classification), found {num_labels!r}")
            self.num_labels = num_labels


def param_shapes(cfg):
    """{HF parameter name: shape} in HF's named_parameters order."""
    E, I = cfg.n_embd, cfg.n_inner
    s = {"transformer.wte.weight": [cfg.vocab_size, E], "transformer.wpe.weight": [cfg.n_positions, E]}
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        s[p + "ln_1.weight"] = [E]
        s[p + "ln_1.bias"] = [E]
        s[p + "attn.c_attn.weight"] = [E, 3 * E]
        s[p + "attn.c_attn.bias"] = [3 * E]
        s[p + "attn.c_proj.weight"] = [E, E]
        s[p + "attn.c_proj.bias"] = [E]
        s[p + "ln_2.weight"] = [E]
        s[p + "ln_2.bias"] = [E]
        s[p + "mlp.c_fc.weight"] = [E, I]
        s[p + "mlp.c_fc.bias"] = [I]
        s[p + "mlp.c_proj.weight"] = [I, E]
        s[p + "mlp.c_proj.bias"] = [E]
    s["transformer.ln_f.weight"] = [E]
    s["transformer.ln_f.bias"] = [E]
    if cfg.task == "lm":
        if not cfg.tie:
            s["lm_head.weight"] = [cfg.vocab_size, E]
    else:
        s["score.weight"] = [cfg.num_labels, E]
    return s


def module_list(cfg):
    """[(name, class name)] as HF's model.named_modules() lists them, root excluded."""
    m = [("transformer", "GPT2Model"), ("transformer.wte", "Embedding"), ("transformer.wpe", "Embedding"),
         ("transformer.drop", "Dropout"), ("transformer.h", "ModuleList")]
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}"
        m += [(p, "GPT2Block"), (p + ".ln_1", "LayerNorm"), (p + ".attn", "GPT2Attention"),
              (p + ".attn.c_attn", "Conv1D"), (p + ".attn.c_proj", "Conv1D"),
              (p + ".attn.attn_dropout", "Dropout"), (p + ".attn.resid_dropout", "Dropout"),
              (p + ".ln_2", "LayerNorm"), (p + ".mlp", "GPT2MLP"), (p + ".mlp.c_fc", "Conv1D"),
              (p + ".mlp.c_proj", "Conv1D"), (p + ".mlp.act", "Activation"), (p + ".mlp.dropout", "Dropout")]
    m.append(("transformer.ln_f", "LayerNorm"))
    m.append(("lm_head", "Linear") if cfg.task == "lm" else ("score", "Linear"))
    return m


def canonical_name(key):
    """An HF checkpoint key as this model names it: GPT2Model checkpoints (gpt2's own files)
    have no `transformer.` prefix."""
    if key.startswith("transformer.") or key in ("lm_head.weight", "score.weight"):
        return key
    return "transformer." + key


def load_model_dir(model_dir, task, dtype):
    cfg = GPT2Config(read_json(os.path.join(model_dir, "config.json"), "model config"), task, f"{model_dir}/config.json")
    path = os.path.join(model_dir, "model.safetensors")
    tensors, _ = read_safetensors(path)
    shapes = param_shapes(cfg)
    params, unexpected, mismatched = {}, [], []
    extra_head = None
    for key, t in tensors.items():
        name = canonical_name(key)
        if re.fullmatch(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)", name):
            continue  # the causal-mask buffers of older checkpoints
        if name == "lm_head.weight" and "lm_head.weight" not in shapes:
            extra_head = (key, t)
            continue
        if name not in shapes:
            unexpected.append(key)
        elif list(t.shape) != shapes[name]:
            mismatched.append(f"{key}: expected {shapes[name]}, found {list(t.shape)}")
        else:
            params[name] = t.to(dtype)
    missing = [n for n in shapes if n not in params]
    if missing or unexpected or mismatched:
        fail(f"{path} does not fit the config ({task}): missing {missing}, unexpected {unexpected}, shape mismatches {mismatched}")
    if extra_head is not None:
        key, t = extra_head
        if task == "lm":
            if list(t.shape) != shapes["transformer.wte.weight"] or not torch.equal(t.to(dtype), params["transformer.wte.weight"]):
                fail(f"{path}: tie_word_embeddings is true but {key} differs from transformer.wte.weight")
        else:
            warn(f"{path}: {key} is not used by GPT2ForSequenceClassification (ignored, as transformers does)")
    return cfg, params


def save_model_dir(out_dir, cfg, params):
    """config.json (the input config, as transformers writes it: indent 2, sorted keys) and
    model.safetensors (F32, HF state-dict names, lm_head.weight omitted when tied)."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, "config.json"), [json.dumps(cfg.raw, indent=2, sort_keys=True) + "\n"])
    write_safetensors(os.path.join(out_dir, "model.safetensors"), params, {"format": "pt"})


# --------------------------------------------------------------------------------------------
# LoRA as PEFT does it


def is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


class Lora:
    """One LoRA adapter ("default") on the model: its config as PEFT would save it, the targeted
    modules with rank and scaling, lora_A [r, in] and lora_B [out, r] per module, the
    modules_to_save and the bias mode."""

    def __init__(self, raw, cfg, base_model_path, loaded, where):
        if not isinstance(raw, dict):
            fail(f"{where}: expected a JSON object (a LoraConfig)")
        conf = dict(LORA_CONFIG_DEFAULTS)
        conf["rank_pattern"] = {}
        conf["alpha_pattern"] = {}
        conf["loftq_config"] = {}
        for k, v in raw.items():
            if k == "runtime_config":
                continue  # runtime-only (ephemeral GPU offload); LoraConfig.to_dict() drops it
            if k not in LORA_CONFIG_DEFAULTS:
                if loaded:
                    warn(f"{where}: unknown key {k!r} ignored (as PEFT does)")
                    continue
                fail(f"{where}: {k!r} is not a LoraConfig field")
            conf[k] = v
        if conf["peft_type"] != "LORA":
            fail(f"{where}: peft_type must be \"LORA\", found {conf['peft_type']!r}")
        for k in LORA_UNSUPPORTED:
            if conf[k] != LORA_CONFIG_DEFAULTS[k]:
                fail(f"{where}: {k}={conf[k]!r} is not supported by this reference")
        if conf["loftq_config"] not in ({}, None):
            fail(f"{where}: loftq_config is not supported by this reference")
        if conf["init_lora_weights"] not in (True, False, "gaussian", "orthogonal"):
            # the others (pissa, olora, corda, loftq, eva, lora_ga) change the base weights or the ranks
            fail(f"{where}: init_lora_weights={conf['init_lora_weights']!r} is not supported by this reference (true, false, \"gaussian\", \"orthogonal\")")
        if conf["task_type"] not in (None, "CAUSAL_LM", "SEQ_CLS"):
            fail(f"{where}: task_type must be null, \"CAUSAL_LM\" or \"SEQ_CLS\", found {conf['task_type']!r}")
        if not isinstance(conf["r"], int) or isinstance(conf["r"], bool) or conf["r"] <= 0:
            fail(f"{where}: r must be a positive integer, found {conf['r']!r}")
        if not isinstance(conf["lora_alpha"], (int, float)) or isinstance(conf["lora_alpha"], bool):
            fail(f"{where}: lora_alpha must be a number, found {conf['lora_alpha']!r}")
        if conf["bias"] not in ("none", "all", "lora_only"):
            fail(f"{where}: bias must be 'none', 'all' or 'lora_only', found {conf['bias']!r}")
        if not isinstance(conf["use_rslora"], bool):
            fail(f"{where}: use_rslora must be true or false, found {conf['use_rslora']!r}")
        for k in ("rank_pattern", "alpha_pattern"):
            if conf[k] is None:
                conf[k] = {}
            if not isinstance(conf[k], dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in conf[k].values()):
                fail(f"{where}: {k} must map patterns to numbers, found {conf[k]!r}")
        if conf["rank_pattern"] and not all(isinstance(v, int) and v > 0 for v in conf["rank_pattern"].values()):
            fail(f"{where}: rank_pattern values must be positive integers, found {conf['rank_pattern']!r}")
        for k in ("target_modules", "exclude_modules"):
            if conf[k] is not None and not isinstance(conf[k], str) and not is_str_list(conf[k]):
                fail(f"{where}: {k} must be null, a string (regex) or a list of strings, found {conf[k]!r}")
        if conf["modules_to_save"] is not None and not is_str_list(conf["modules_to_save"]):
            fail(f"{where}: modules_to_save must be null or a list of strings, found {conf['modules_to_save']!r}")
        ltt = conf["layers_to_transform"]
        if ltt is not None and not (isinstance(ltt, int) and not isinstance(ltt, bool)) and not (
            isinstance(ltt, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in ltt)
        ):
            fail(f"{where}: layers_to_transform must be null, an integer or a list of integers, found {ltt!r}")
        lp = conf["layers_pattern"]
        if lp is not None and not isinstance(lp, str) and not is_str_list(lp):
            fail(f"{where}: layers_pattern must be null, a string or a list of strings, found {lp!r}")
        # LoraConfig.__post_init__'s checks
        if isinstance(conf["target_modules"], str) and ltt is not None:
            fail(f"{where}: `layers_to_transform` cannot be used when `target_modules` is a str.")
        if isinstance(conf["target_modules"], str) and lp is not None:
            fail(f"{where}: `layers_pattern` cannot be used when `target_modules` is a str.")
        if lp and not ltt and ltt != 0:
            fail(f"{where}: When `layers_pattern` is specified, `layers_to_transform` must also be specified.")
        if conf["lora_dropout"]:
            warn(f"{where}: lora_dropout={conf['lora_dropout']} is recorded but not applied (all dropout is off in this reference)")
        if conf["peft_version"] is None:
            conf["peft_version"] = PEFT_VERSION
        # PeftModelForSequenceClassification.__init__ extends modules_to_save before injection
        if conf["task_type"] == "SEQ_CLS":
            conf["modules_to_save"] = list(conf["modules_to_save"] or []) + SEQ_CLS_MODULES_TO_SAVE
        if conf["base_model_name_or_path"] is None:
            conf["base_model_name_or_path"] = base_model_path
        self.conf = conf
        self.cfg = cfg
        self.where = where
        self._resolve_targets()
        self._resolve_modules_to_save()
        self.A = {}
        self.B = {}

    # -- which modules get LoRA (BaseTuner.inject_adapter / check_target_module_exists)

    def _resolve_targets(self):
        conf, cfg, where = self.conf, self.cfg, self.where
        modules = module_list(cfg)
        kinds = dict(modules)
        keys = [k for k, _ in modules]
        if conf["target_modules"] is None:
            conf["target_modules"] = list(GPT2_DEFAULT_TARGETS)
        tm = conf["target_modules"]
        if isinstance(tm, str) and tm.lower() == "all-linear":
            names = {k for k, kind in modules if kind in ("Linear", "Conv1D")}
            if cfg.task == "lm":
                names.discard("lm_head")  # the output embeddings
            elif conf["task_type"] == "SEQ_CLS":
                names.discard("score")
            tm = sorted(names)
        if isinstance(tm, list):
            tm = sorted(set(tm))  # a set in PEFT; written as a list (sorted here; PEFT's order is a set's)
            if len(tm) >= MIN_TARGET_MODULES_FOR_OPTIMIZATION:
                suffixes = tuple("." + s for s in tm)
                others = [k for k in keys if k not in tm and not k.endswith(suffixes)]
                minimal = find_minimal_target_modules(tm, others)
                if len(minimal) < len(tm):
                    tm = sorted(minimal)
        conf["target_modules"] = tm
        if isinstance(conf["exclude_modules"], list):
            conf["exclude_modules"] = sorted(set(conf["exclude_modules"]))
        self.targets = {}
        for key in keys:
            if not self._matches(key):
                continue
            kind = kinds[key]
            if kind not in ("Conv1D", "Linear"):
                fail(f"{where}: target module {key} is a {kind}; this reference supports LoRA on Conv1D and Linear modules only")
            r_key = get_pattern_key(list(conf["rank_pattern"]), key)
            a_key = get_pattern_key(list(conf["alpha_pattern"]), key)
            r = conf["rank_pattern"].get(r_key, conf["r"])
            alpha = conf["alpha_pattern"].get(a_key, conf["lora_alpha"])
            scale = alpha / math.sqrt(r) if conf["use_rslora"] else alpha / r
            # a tied lm_head has no weight of its own: it is wte's [vocab, n_embd]
            w = param_shapes(cfg).get(key + ".weight") or [cfg.vocab_size, cfg.n_embd]
            n_in, n_out = (w[0], w[1]) if kind == "Conv1D" else (w[1], w[0])
            self.targets[key] = {"kind": kind, "r": r, "alpha": alpha, "scale": scale, "in": n_in, "out": n_out}
            # dispatch_default sets the config's fan_in_fan_out to what the module needs
            conf["fan_in_fan_out"] = kind == "Conv1D"
        if not self.targets:
            shown = conf["target_modules"]
            close = sorted({k.rsplit(".", 1)[-1] for k in keys if kinds[k] in ("Conv1D", "Linear")})
            fail(f"{where}: Target modules {shown!r} not found in the base model (LoRA-able modules end in {close})")

    def _matches(self, key):
        conf = self.conf
        ex = conf["exclude_modules"]
        if ex:
            if isinstance(ex, str):
                if re.fullmatch(ex, key):
                    return False
            elif key in ex or any(key.endswith("." + e) for e in ex):
                return False
        mts = conf["modules_to_save"]
        if mts and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in mts):
            return False
        tm = conf["target_modules"]
        if isinstance(tm, str):
            return re.fullmatch(tm, key) is not None
        if key in tm:
            return True
        found = any(key.endswith("." + t) for t in tm)
        ltt = conf["layers_to_transform"]
        using_indexes = ltt is not None and (len(ltt) != 0 if isinstance(ltt, list) else True)
        if using_indexes and found:
            lp = conf["layers_pattern"]
            m = None
            if lp is None or len(lp) == 0:
                m = re.match(r".*?\.[^.]*\.(\d+)\.", key)
            else:
                for pattern in [lp] if isinstance(lp, str) else lp:
                    m = re.match(rf".*?\.{pattern}\.(\d+)\.", key)
                    if m is not None:
                        break
            if m is None:
                return False
            idx = int(m.group(1))
            return idx == ltt if isinstance(ltt, int) else idx in ltt
        return found

    # -- modules_to_save (utils.other._set_trainable: a PeftModel module name ending in an entry)

    def _resolve_modules_to_save(self):
        conf, cfg, where = self.conf, self.cfg, self.where
        shapes = param_shapes(cfg)
        self.mts_params = []
        for key, _ in module_list(cfg):
            if not any(("base_model.model." + key).endswith(m) for m in conf["modules_to_save"] or []):
                continue
            if key in ("lm_head", "transformer.wte", "transformer") and cfg.task == "lm" and cfg.tie:
                fail(f"{where}: modules_to_save {key} shares its weight with the tied embeddings; not supported by this reference")
            names = [n for n in shapes if n.startswith(key + ".")]
            if conf["bias"] != "none" and any(n.endswith(".bias") for n in names):
                fail(f"{where}: bias={conf['bias']!r} together with modules_to_save {key}, which has a bias, is not supported by this reference")
            for n in names:
                if n not in self.mts_params:
                    self.mts_params.append(n)

    # -- parameters and their names on disk

    def bias_params(self):
        """[(HF name, PEFT on-disk key)] of the biases the bias mode trains and saves."""
        shapes = param_shapes(self.cfg)
        out = []
        if self.conf["bias"] == "all":
            for n in shapes:
                if n.endswith(".bias"):
                    mod = n[: -len(".bias")]
                    key = f"base_model.model.{mod}.base_layer.bias" if mod in self.targets else f"base_model.model.{n}"
                    out.append((n, key))
        elif self.conf["bias"] == "lora_only":
            # the targeted modules' biases at `<module>.base_layer.bias`, as PEFT main saves them
            # since huggingface/peft#3490 (0.20.0 and earlier drop them: peft#3306)
            for mod in self.targets:
                if mod + ".bias" in shapes:
                    out.append((mod + ".bias", f"base_model.model.{mod}.base_layer.bias"))
        return out

    def lora_keys(self, mod):
        return f"base_model.model.{mod}.lora_A.weight", f"base_model.model.{mod}.lora_B.weight"

    def set_weights(self, tensors, where, dtype, loading, params):
        """Take lora_A / lora_B (and modules_to_save, bias) tensors from {PEFT key: tensor}.
        Loading an adapter needs every lora_A, lora_B and modules_to_save tensor (biases are
        optional: PEFT 0.20.0 does not save lora_only ones); a fresh adapter's init file needs
        every lora_A, and lora_B defaults to zeros and modules_to_save to the model's weights,
        as PEFT initialises them. Every name and shape is checked before anything is set."""
        expected = {}
        for mod, t in self.targets.items():
            ka, kb = self.lora_keys(mod)
            expected[ka] = ("A", mod, [t["r"], t["in"]], True)
            expected[kb] = ("B", mod, [t["out"], t["r"]], loading)
        shapes = param_shapes(self.cfg)
        for n in self.mts_params:
            expected["base_model.model." + n] = ("param", n, shapes[n], loading)
        for n, key in self.bias_params():
            expected[key] = ("param", n, shapes[n], False)
        unexpected = [k for k in tensors if k not in expected]
        missing = [k for k, e in expected.items() if e[3] and k not in tensors]
        mismatched = [
            f"{k}: expected {e[2]}, found {list(tensors[k].shape)}"
            for k, e in expected.items()
            if k in tensors and list(tensors[k].shape) != e[2]
        ]
        if unexpected or missing or mismatched:
            fail(f"{where} does not fit the LoRA config: missing {missing}, unexpected {unexpected}, shape mismatches {mismatched}")
        for mod, t in self.targets.items():
            ka, kb = self.lora_keys(mod)
            self.A[mod] = tensors[ka].to(dtype)
            self.B[mod] = tensors[kb].to(dtype) if kb in tensors else torch.zeros(t["out"], t["r"], dtype=dtype)
        for k, e in expected.items():
            if e[0] == "param" and k in tensors:
                params[e[1]] = tensors[k].to(dtype)

    def state_dict(self, params):
        """{PEFT on-disk key: tensor} as get_peft_model_state_dict returns it."""
        sd = {}
        for mod in self.targets:
            ka, kb = self.lora_keys(mod)
            sd[ka] = self.A[mod]
            sd[kb] = self.B[mod]
        for n in self.mts_params:
            sd["base_model.model." + n] = params[n]
        for n, key in self.bias_params():
            sd[key] = params[n]
        return sd

    def saved_config(self):
        conf = dict(self.conf)
        conf["inference_mode"] = True
        conf["peft_type"] = "LORA"
        if conf["task_type"] is None:
            cls = "GPT2LMHeadModel" if self.cfg.task == "lm" else "GPT2ForSequenceClassification"
            conf["auto_mapping"] = {"base_model_class": cls, "parent_library": "transformers.models.gpt2.modeling_gpt2"}
        else:
            conf["auto_mapping"] = None
        return conf

    def save(self, out_dir, params):
        os.makedirs(out_dir, exist_ok=True)
        write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"), self.state_dict(params), {"format": "pt"})
        atomic_write(os.path.join(out_dir, "adapter_config.json"), [json.dumps(self.saved_config(), indent=2, sort_keys=True)])


def get_pattern_key(pattern_keys, key_to_match):
    """PEFT's utils.other.get_pattern_key: the first key that matches `(.*\\.)?key$`."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def find_minimal_target_modules(target_modules, other_module_names):
    """PEFT's tuners_utils._find_minimal_target_modules."""
    target_modules = set(target_modules)
    other = set(other_module_names)

    def suffixes(s):
        parts = s.split(".")
        return [".".join(parts[i:]) for i in range(len(parts))][::-1]

    other_suffixes = {x for item in other for x in suffixes(item)}
    required = set()
    for item, sfx in sorted({t: suffixes(t) for t in target_modules}.items(), key=lambda kv: kv[1]):
        for s in sfx:
            if s in required or s in other_suffixes:
                continue
            if not any(item.endswith("." + r) for r in required):
                required.add(s)
                break
    return required if required else target_modules


# --------------------------------------------------------------------------------------------
# the model


class Model:
    def __init__(self, cfg, params, dtype):
        self.cfg = cfg
        self.params = params  # {HF name: tensor}
        self.dtype = dtype
        self.lora = None
        self.merged = False

    def weight(self, mod):
        if mod == "lm_head" and self.cfg.tie:
            return self.params["transformer.wte.weight"]
        return self.params[mod + ".weight"]

    def proj(self, mod, x):
        """Conv1D (x·W + b, W [in, out]) or Linear (x·Wᵀ [+ b], W [out, in]) of module `mod`, plus
        PEFT's LoRA term lora_B(lora_A(x)) * scaling when the module is targeted."""
        w = self.weight(mod)
        b = self.params.get(mod + ".bias")
        if mod in ("lm_head", "score"):
            y = F.linear(x, w, b)
        else:
            shape = x.shape[:-1] + (w.shape[1],)
            y = torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(shape)
        lora = self.lora
        if lora is not None and not self.merged and mod in lora.targets:
            y = y + F.linear(F.linear(x, lora.A[mod]), lora.B[mod]) * lora.targets[mod]["scale"]
        return y

    def hidden(self, input_ids, attention_mask):
        cfg, P = self.cfg, self.params
        batch, T = input_ids.shape
        E, H = cfg.n_embd, cfg.n_head
        hd = E // H
        x = F.embedding(input_ids, P["transformer.wte.weight"]) + P["transformer.wpe.weight"][:T].unsqueeze(0)
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool().view(batch, 1, 1, T)
        act = ACTIVATIONS[cfg.activation]
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            h = F.layer_norm(x, (E,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.eps)
            q, k, v = self.proj(p + "attn.c_attn", h).split(E, dim=2)
            q, k, v = (t.view(batch, T, H, hd).permute(0, 2, 1, 3) for t in (q, k, v))
            scores = torch.matmul(q, k.transpose(-1, -2))
            if cfg.scale_attn_weights:
                scores = scores / torch.full([], v.size(-1) ** 0.5, dtype=scores.dtype)
            if cfg.scale_attn_by_inverse_layer_idx:
                scores = scores / float(i + 1)
            scores = torch.where(allowed, scores, torch.full([], torch.finfo(scores.dtype).min, dtype=scores.dtype))
            attn = torch.matmul(F.softmax(scores, dim=-1), v)
            attn = attn.permute(0, 2, 1, 3).contiguous().view(batch, T, E)
            x = x + self.proj(p + "attn.c_proj", attn)
            h = F.layer_norm(x, (E,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.eps)
            x = x + self.proj(p + "mlp.c_proj", act(self.proj(p + "mlp.c_fc", h)))
        return F.layer_norm(x, (E,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], cfg.eps)

    def run(self, batch, pooling):
        """(logits, loss or None, pool index or None) of one batch.

        lm: logits [B, T, V]; loss = mean cross-entropy of logits[:, :-1] against labels[:, 1:],
        ignore_index -100 (labels default to input_ids). seq_cls: score logits pooled at the
        last non-pad token [B, num_labels]; loss = mean cross-entropy against labels [B]."""
        x = self.hidden(batch["input_ids"], batch.get("attention_mask"))
        if self.cfg.task == "lm":
            logits = self.proj("lm_head", x)
            labels = batch.get("labels")
            if labels is None:
                labels = batch["input_ids"]
            V = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
            return logits, loss, None
        all_logits = self.proj("score", x)
        ids = batch["input_ids"]
        B, T = ids.shape
        pad = self.cfg.pad_token_id
        if pad is None:
            idx = torch.full((B,), T - 1, dtype=torch.long)
        elif pooling == "first_pad":
            # transformers before huggingface/transformers#35911 (Jan 2025): the token before the first pad, wrapping to the last position
            idx = (torch.eq(ids, pad).int().argmax(-1) - 1) % T
        else:
            # transformers since #35911: the rightmost token that is not the pad token
            non_pad = (ids != pad).int()
            idx = (torch.arange(T, dtype=torch.int) * non_pad).argmax(-1)
        pooled = all_logits[torch.arange(B), idx]
        labels = batch.get("labels")
        loss = F.cross_entropy(pooled, labels) if labels is not None else None
        return pooled, loss, idx

    def merge(self):
        """merge_and_unload: W += scaling·(B·A) for Linear, W += scaling·(B·A)ᵀ for Conv1D."""
        if self.lora is None or self.merged:
            return
        with torch.no_grad():
            for mod, t in self.lora.targets.items():
                if mod == "lm_head" and self.cfg.tie:
                    fail("merge: lm_head is targeted but tied to transformer.wte; merging into a shared weight is not supported")
                delta = self.lora.B[mod] @ self.lora.A[mod]
                if t["kind"] == "Conv1D":
                    delta = delta.T
                w = self.params[mod + ".weight"]
                self.params[mod + ".weight"] = (w + delta * t["scale"]).detach()
        self.merged = True


# --------------------------------------------------------------------------------------------
# jobs

JOB_KEYS = {
    "model_dir", "task", "dtype", "adapter_dir", "lora", "batches", "mode", "trainable", "optimizer",
    "steps", "record", "final_logits", "merge", "pooling", "out", "save_adapter_dir", "save_model_dir",
}


def int_matrix(v, where, allow_none=False):
    if v is None and allow_none:
        return None
    if not isinstance(v, list) or not v or not all(isinstance(r, list) and r for r in v):
        fail(f"{where}: expected a non-empty list of non-empty lists of integers")
    n = len(v[0])
    for r in v:
        if len(r) != n:
            fail(f"{where}: rows differ in length ({len(r)} vs {n})")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in r):
            fail(f"{where}: expected integers, found {r!r}")
    return torch.tensor(v, dtype=torch.long)


def parse_batches(raw, cfg, where):
    if not isinstance(raw, list) or not raw:
        fail(f"{where}: batches must be a non-empty list")
    out = []
    for i, b in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(b, dict):
            fail(f"{w}: expected an object with input_ids")
        extra = set(b) - {"input_ids", "labels", "attention_mask"}
        if extra:
            fail(f"{w}: unknown keys {sorted(extra)} (input_ids, labels, attention_mask)")
        ids = int_matrix(b.get("input_ids"), f"{w}.input_ids")
        if ids.min() < 0 or ids.max() >= cfg.vocab_size:
            fail(f"{w}.input_ids: token ids must be in [0, {cfg.vocab_size}), found {ids.min().item()}..{ids.max().item()}")
        if ids.shape[1] > cfg.n_positions:
            fail(f"{w}.input_ids: sequence length {ids.shape[1]} is over n_positions {cfg.n_positions}")
        batch = {"input_ids": ids}
        if b.get("attention_mask") is not None:
            m = int_matrix(b["attention_mask"], f"{w}.attention_mask")
            if m.shape != ids.shape or not bool(((m == 0) | (m == 1)).all()):
                fail(f"{w}.attention_mask: expected 0/1 of shape {list(ids.shape)}")
            batch["attention_mask"] = m
        labels = b.get("labels")
        if labels is not None:
            if cfg.task == "lm":
                lab = int_matrix(labels, f"{w}.labels")
                if lab.shape != ids.shape:
                    fail(f"{w}.labels: expected shape {list(ids.shape)}, found {list(lab.shape)}")
                bad = (lab != -100) & ((lab < 0) | (lab >= cfg.vocab_size))
            else:
                if not isinstance(labels, list) or len(labels) != ids.shape[0] or not all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
                    fail(f"{w}.labels: expected {ids.shape[0]} integer class labels, found {labels!r}")
                lab = torch.tensor(labels, dtype=torch.long)
                bad = (lab < 0) | (lab >= cfg.num_labels)
            if bool(bad.any()):
                fail(f"{w}.labels: label out of range (vocabulary / num_labels, or -100 for lm)")
            batch["labels"] = lab
        out.append(batch)
    return out


def select_trainable(model, spec, where):
    """[(output name, tensor)] of the trainable tensors; output names are HF names for base
    parameters and PEFT on-disk names for lora_A / lora_B."""
    cfg, P, lora = model.cfg, model.params, model.lora
    lora_items = []
    if lora is not None:
        for mod in lora.targets:
            ka, kb = lora.lora_keys(mod)
            lora_items += [(ka, ("A", mod)), (kb, ("B", mod))]
    base = [(n, ("P", n)) for n in param_shapes(cfg)]
    if spec is None:
        spec = "lora" if lora is not None else "all"
    if spec == "lora":
        if lora is None:
            fail(f"{where}: trainable \"lora\" needs `lora` or `adapter_dir`")
        chosen = lora_items + [(n, ("P", n)) for n in lora.mts_params] + [(n, ("P", n)) for n, _ in lora.bias_params()]
    elif spec == "all":
        chosen = base + lora_items
    elif spec == "head":
        if lora is not None and lora.mts_params:
            chosen = [(n, ("P", n)) for n in lora.mts_params]
        elif cfg.task == "seq_cls":
            chosen = [("score.weight", ("P", "score.weight"))]
        elif not cfg.tie:
            chosen = [("lm_head.weight", ("P", "lm_head.weight"))]
        else:
            fail(f"{where}: trainable \"head\": the LM head is tied to transformer.wte; there is no separate head to train")
    elif isinstance(spec, dict):
        extra = set(spec) - {"freeze", "freeze_first_blocks"}
        if extra:
            fail(f"{where}: unknown keys {sorted(extra)} (freeze, freeze_first_blocks)")
        pats = spec.get("freeze", [])
        if not is_str_list(pats):
            fail(f"{where}.freeze: expected a list of regular expressions")
        try:
            pats = [re.compile(p) for p in pats]
        except re.error as e:
            fail(f"{where}.freeze: bad regular expression: {e}")
        k = spec.get("freeze_first_blocks", 0)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= cfg.n_layer:
            fail(f"{where}.freeze_first_blocks: expected an integer in [0, {cfg.n_layer}], found {k!r}")
        blocks = tuple(f"transformer.h.{i}." for i in range(k)) + tuple(f"base_model.model.transformer.h.{i}." for i in range(k))
        chosen = [(n, r) for n, r in base + lora_items if not n.startswith(blocks) and not any(p.search(n) for p in pats)]
    else:
        fail(f"{where}: expected \"lora\", \"all\", \"head\" or {{\"freeze\": [...], \"freeze_first_blocks\": k}}, found {spec!r}")
    if not chosen:
        fail(f"{where}: nothing is trainable")
    out, seen = [], set()
    for name, (kind, key) in chosen:
        if name in seen:
            continue
        seen.add(name)
        if kind == "P":
            t = P[key].detach().clone().requires_grad_(True)
            P[key] = t
        else:
            store = lora.A if kind == "A" else lora.B
            t = store[key].detach().clone().requires_grad_(True)
            store[key] = t
        out.append((name, t))
    return out


def make_optimizer(spec, trainable, where):
    if not isinstance(spec, dict):
        fail(f"{where}: expected {{\"type\": \"adamw\" | \"sgd\", \"lr\": ...}}")
    kind = spec.get("type", "adamw")
    allowed = {"adamw": {"type", "lr", "betas", "eps", "weight_decay", "no_decay"},
               "sgd": {"type", "lr", "momentum", "dampening", "weight_decay", "nesterov", "no_decay"}}
    if kind not in allowed:
        fail(f"{where}.type: expected \"adamw\" or \"sgd\", found {kind!r}")
    extra = set(spec) - allowed[kind]
    if extra:
        fail(f"{where}: unknown keys {sorted(extra)} for {kind} ({sorted(allowed[kind])})")
    if not isinstance(spec.get("lr"), (int, float)):
        fail(f"{where}.lr: a number is required")
    no_decay = spec.get("no_decay", [])
    if not is_str_list(no_decay):
        fail(f"{where}.no_decay: expected a list of regular expressions")
    nd = [re.compile(p) for p in no_decay]
    decay = [t for n, t in trainable if not any(p.search(n) for p in nd)]
    plain = [t for n, t in trainable if any(p.search(n) for p in nd)]
    groups = [{"params": decay}] + ([{"params": plain, "weight_decay": 0.0}] if plain else [])
    try:
        if kind == "adamw":
            return torch.optim.AdamW(
                groups, lr=spec["lr"], betas=tuple(spec.get("betas", (0.9, 0.999))), eps=spec.get("eps", 1e-8),
                weight_decay=spec.get("weight_decay", 1e-2),
            )
        return torch.optim.SGD(
            groups, lr=spec["lr"], momentum=spec.get("momentum", 0.0), dampening=spec.get("dampening", 0.0),
            weight_decay=spec.get("weight_decay", 0.0), nesterov=spec.get("nesterov", False),
        )
    except (TypeError, ValueError) as e:
        fail(f"{where}: {e}")


def run_job(job, base_dir, where):
    if not isinstance(job, dict):
        fail(f"{where}: a job must be a JSON object")
    extra = set(job) - JOB_KEYS
    if extra:
        fail(f"{where}: unknown keys {sorted(extra)}; a job has {sorted(JOB_KEYS)}")

    def path(key, required=False):
        v = job.get(key)
        if v is None:
            if required:
                fail(f"{where}: `{key}` is required")
            return None
        if not isinstance(v, str) or not v:
            fail(f"{where}.{key}: expected a path")
        return v if os.path.isabs(v) else os.path.join(base_dir, v)

    task = job.get("task", "lm")
    if task not in ("lm", "seq_cls"):
        fail(f"{where}.task: expected \"lm\" or \"seq_cls\", found {task!r}")
    dtype = {"float64": torch.float64, "float32": torch.float32}.get(job.get("dtype", "float64"))
    if dtype is None:
        fail(f"{where}.dtype: expected \"float64\" or \"float32\", found {job.get('dtype')!r}")
    mode = job.get("mode", "forward")
    if mode not in ("forward", "grad", "train"):
        fail(f"{where}.mode: expected \"forward\", \"grad\" or \"train\", found {mode!r}")
    pooling = job.get("pooling", "last_non_pad")
    if pooling not in ("last_non_pad", "first_pad"):
        fail(f"{where}.pooling: expected \"last_non_pad\" or \"first_pad\", found {pooling!r}")
    for key in ("merge", "record", "final_logits"):
        if not isinstance(job.get(key, False), bool):
            fail(f"{where}.{key}: expected true or false")
    if job.get("merge") and mode == "grad":
        fail(f"{where}.merge: not allowed in grad mode (merging happens after training, before the forward outputs)")
    model_dir = path("model_dir", required=True)
    out_path = path("out")
    cfg, params = load_model_dir(model_dir, task, dtype)
    model = Model(cfg, params, dtype)

    if job.get("adapter_dir") is not None and job.get("lora") is not None:
        fail(f"{where}: give either `adapter_dir` (load an adapter) or `lora` (inject a fresh one), not both")
    if job.get("adapter_dir") is not None:
        ad = path("adapter_dir")
        conf_path = os.path.join(ad, "adapter_config.json")
        raw = read_json(conf_path, "adapter config")
        if not isinstance(raw, dict) or "peft_type" not in raw:
            fail(f"{conf_path}: the config is missing required keys: ['peft_type']")
        model.lora = Lora(raw, cfg, job["model_dir"], loaded=True, where=conf_path)
        st_path = os.path.join(ad, "adapter_model.safetensors")
        tensors, _ = read_safetensors(st_path)
        model.lora.set_weights(tensors, st_path, dtype, loading=True, params=params)
    elif job.get("lora") is not None:
        spec = job["lora"]
        if not isinstance(spec, dict) or set(spec) - {"config", "init_file"} or "config" not in spec:
            fail(f"{where}.lora: expected {{\"config\": LoraConfig, \"init_file\": path}}")
        model.lora = Lora(spec["config"], cfg, job["model_dir"], loaded=False, where=f"{where}.lora.config")
        init = spec.get("init_file")
        if not isinstance(init, str):
            fail(f"{where}.lora.init_file: a safetensors file of the initial lora_A (lora_B defaults to zeros) is required")
        init = init if os.path.isabs(init) else os.path.join(base_dir, init)
        tensors, _ = read_safetensors(init)
        model.lora.set_weights(tensors, init, dtype, loading=False, params=params)

    batches = parse_batches(job.get("batches"), cfg, f"{where}.batches")
    if task == "seq_cls" and mode != "forward" and "labels" not in batches[0]:
        fail(f"{where}.batches[0].labels: {mode} mode needs class labels")
    results = {}

    def emit_forward(prefix=""):
        with torch.no_grad():
            for i, b in enumerate(batches):
                logits, loss, idx = model.run(b, pooling)
                results[f"{prefix}logits.{i}"] = logits
                if loss is not None:
                    results[f"{prefix}loss.{i}"] = loss.reshape(1)
                if idx is not None:
                    results[f"{prefix}pool_index.{i}"] = idx.to(dtype)

    if mode == "forward":
        if job.get("merge"):
            model.merge()
        emit_forward()
    elif mode == "grad":
        trainable = select_trainable(model, job.get("trainable"), f"{where}.trainable")
        logits, loss, idx = model.run(batches[0], pooling)
        loss.backward()
        results["loss.0"] = loss.detach().reshape(1)
        results["logits.0"] = logits.detach()
        if idx is not None:
            results["pool_index.0"] = idx.to(dtype)
        for name, t in trainable:
            results[f"grad.{name}"] = t.grad if t.grad is not None else torch.zeros_like(t)
    else:
        trainable = select_trainable(model, job.get("trainable"), f"{where}.trainable")
        opt = make_optimizer(job.get("optimizer"), trainable, f"{where}.optimizer")
        steps = job.get("steps", len(batches))
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            fail(f"{where}.steps: expected a positive integer, found {steps!r}")
        for step in range(steps):
            for _, t in trainable:
                t.grad = None
            _, loss, _ = model.run(batches[step % len(batches)], pooling)
            loss.backward()
            results[f"loss.{step}"] = loss.detach().reshape(1)
            if job.get("record"):
                for name, t in trainable:
                    results[f"trace.{step}.grad.{name}"] = t.grad.detach().clone() if t.grad is not None else torch.zeros_like(t)
            opt.step()
            if job.get("record"):
                for name, t in trainable:
                    results[f"trace.{step}.param.{name}"] = t.detach().clone()
        for name, t in trainable:
            results[f"param.{name}"] = t.detach().clone()
        if job.get("merge"):
            model.merge()
        if job.get("final_logits"):
            emit_forward("final.")

    if job.get("save_adapter_dir") is not None:
        if model.lora is None:
            fail(f"{where}.save_adapter_dir: there is no LoRA adapter to save")
        model.lora.save(path("save_adapter_dir"), params)
    if job.get("save_model_dir") is not None:
        save_model_dir(path("save_model_dir"), cfg, {k: v for k, v in params.items()})
    if out_path is not None:
        write_safetensors(out_path, {k: v.detach() for k, v in results.items()}, dtype=dtype)


def run_jobs(jobs, base_dir, where):
    """Run one job object or a list of them, in order."""
    if not isinstance(jobs, list):
        run_job(jobs, base_dir, "job")
        return
    if not jobs:
        fail(f"{where}: an empty list of jobs")
    for i, job in enumerate(jobs):
        try:
            run_job(job, base_dir, f"job[{i}]")
        except JobError as e:
            msg = str(e)
            fail(msg if msg.startswith(f"job[{i}]") else f"job[{i}]: {msg}")


def serve():
    """--serve: one request per stdin line, {"jobs": job or [jobs], "base_dir": path}; one
    answer per stdout line, {"ok": true, "warnings": [...]} or {"ok": false, "status": 2 (bad
    job) or 1 (unexpected), "error": "...", "warnings": [...]}. Ends at end of input. Lets a
    test file pay torch's start-up once."""
    global WARNINGS
    for line in sys.stdin:
        if not line.strip():
            continue
        WARNINGS = []
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or "jobs" not in req:
                fail('a request is {"jobs": job or [jobs], "base_dir": path}')
            run_jobs(req["jobs"], req.get("base_dir") or os.getcwd(), "request")
            answer = {"ok": True}
        except JobError as e:
            answer = {"ok": False, "status": 2, "error": f"gpt2_ref: {e}"}
        except Exception:
            answer = {"ok": False, "status": 1, "error": traceback.format_exc()}
        answer["warnings"] = WARNINGS
        WARNINGS = None
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--serve":
        return serve()
    if len(argv) != 2:
        print("usage: /usr/bin/python3 test/torch/gpt2_ref.py job.json | --serve   (see test/torch/README.md)", file=sys.stderr)
        return 2
    job_path = argv[1]
    try:
        jobs = read_json(job_path, "job file")
        run_jobs(jobs, os.path.dirname(os.path.abspath(job_path)), job_path)
    except JobError as e:
        print(f"gpt2_ref: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

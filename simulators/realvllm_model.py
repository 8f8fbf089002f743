"""Build the tiny Llama that a real vLLM serves in the e2e tests and `inferwatch demo --real-vllm`:
`python realvllm_model.py CORPUS OUT_DIR`.

Runs inside vLLM's own virtual environment (it has torch, transformers and tokenizers; the
project's does not). The model has random weights from a fixed seed and a byte-level BPE
tokenizer trained on CORPUS (one sentence a line), so the same corpus gives the same files,
byte for byte. Its shape is the smallest the CPU attention kernels accept: head size 64 (16
starts, then fails the first request).
"""

from __future__ import annotations

import sys
from pathlib import Path

VOCAB_SIZE = 2048  # the trainer stops sooner: the corpus has about 1,200 merges
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<pad>"]
# The tokenizer's base alphabet: printable ASCII and the newline, not all 256 bytes. A random
# model emits any token it has; a lone byte of a multi-byte character decodes to no text, and a
# run of them holds a stream's first chunk back (TTFT as the client sees it) for as long.
ALPHABET_TEXT = "".join(map(chr, range(32, 127))) + "\n"
# Plain "role: text" turns; the prompt ends where the assistant's turn begins.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def build(corpus: Path, out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = sorted({c for piece, _ in byte_level.pre_tokenize_str(ALPHABET_TEXT) for c in piece})
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus.read_text().splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )

    config = LlamaConfig(
        vocab_size=len(fast),  # no id without a token: every generated id decodes to text
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python realvllm_model.py CORPUS OUT_DIR")
    build(Path(sys.argv[1]), Path(sys.argv[2]))

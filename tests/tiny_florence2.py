"""Build a tiny random Florence-2 model + processor in a folder, for the captioner tests.

Same transformers classes and files as florence-community/Florence-2-base (Florence2Config with a
DaViT vision tower and a BART text model, Florence2Processor with a BART tokenizer), only tiny.
Its captions are random words; the point is the real loading and generation code path.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_florence2(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (BartConfig, BartTokenizerFast, CLIPImageProcessor, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor, Florence2VisionConfig)

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    words = ("a round orange fox creature with a teal scarf standing in a meadow under the blue sky "
             "describe with a paragraph what is shown in the image picture cartoon character").split()
    bpe.train_from_iterator([" ".join(words)] * 8, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = BartTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", mask_token="<mask>", extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(depths=(1, 1, 1, 1), embed_dim=(16, 16, 16, 16), num_heads=(1, 1, 1, 1),
                                   num_groups=(1, 1, 1, 1), window_size=2, projection_dim=32, drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                      max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
                      forced_eos_token_id=tokenizer.eos_token_id)
    config = Florence2Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessor(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                         do_center_crop=False, image_seq_length=1)
    with torch.no_grad():
        features = model.get_image_features(torch.zeros(1, 3, 64, 64))
    features = features if torch.is_tensor(features) else getattr(features, "pooler_output", features[0])
    image_processor.image_seq_length = features.shape[1]
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                   post_processor_config={"pure_text": {}})
    # Random weights would often stop at once or emit special tokens; make it say a few words.
    # Suppress the special tokens and the single-byte alphabet, so it emits whole word pieces.
    single_bytes = [i for token, i in tokenizer.get_vocab().items() if len(token) == 1]
    model.generation_config.suppress_tokens = sorted(
        set(tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "<unk>", "<mask>", "<image>"]) + single_bytes))
    model.generation_config.min_new_tokens = 4
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    import sys

    print(build_tiny_florence2(Path(sys.argv[1])))

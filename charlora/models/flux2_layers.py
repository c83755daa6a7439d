"""The linear layers of FLUX.2 Klein's transformer blocks, as mflux/diffusers and as BFL name them.

The one table the train stage (which layers can carry a LoRA) and the format converter
(:mod:`charlora.lora.formats`) share. mflux and diffusers use the same names except for the
double block's output projection; BFL's layout (ComfyUI, kohya) fuses query, key and value.
"""

# The key formats charlora.lora.formats reads and writes.
LORA_FORMATS = ("mflux", "diffusers", "comfyui", "kohya")
# Which file is for which tool (README, model card).
USED_BY = {
    "mflux": "mflux (mflux-generate-flux2 --lora-paths)",
    "diffusers": "diffusers (Flux2KleinPipeline.load_lora_weights) and PEFT",
    "comfyui": "ComfyUI (LoraLoaderModelOnly) and other tools that read BFL keys (ai-toolkit, Forge, SwarmUI)",
    "kohya": "kohya sd-scripts and tools that expect lora_unet_* keys with alpha",
}

# Layers of a double-stream block: (mflux name, BFL name, slot in BFL's fused qkv or None).
DOUBLE_BLOCK_LAYERS: tuple[tuple[str, str, int | None], ...] = (
    ("attn.to_q", "img_attn.qkv", 0),
    ("attn.to_k", "img_attn.qkv", 1),
    ("attn.to_v", "img_attn.qkv", 2),
    ("attn.to_out", "img_attn.proj", None),
    ("attn.add_q_proj", "txt_attn.qkv", 0),
    ("attn.add_k_proj", "txt_attn.qkv", 1),
    ("attn.add_v_proj", "txt_attn.qkv", 2),
    ("attn.to_add_out", "txt_attn.proj", None),
    ("ff.linear_in", "img_mlp.0", None),
    ("ff.linear_out", "img_mlp.2", None),
    ("ff_context.linear_in", "txt_mlp.0", None),
    ("ff_context.linear_out", "txt_mlp.2", None),
)
# Layers of a single-stream block (both are fused the same way in every format).
SINGLE_BLOCK_LAYERS: tuple[tuple[str, str, int | None], ...] = (
    ("attn.to_qkv_mlp_proj", "linear1", None),
    ("attn.to_out", "linear2", None),
)
# diffusers wraps the double block's output projection in a ModuleList (to_out.0 = Linear, to_out.1 = Dropout).
DIFFUSERS_RENAMES = {"attn.to_out": "attn.to_out.0"}

DOUBLE_TARGETS = tuple(name for name, _, _ in DOUBLE_BLOCK_LAYERS)
SINGLE_TARGETS = tuple(name for name, _, _ in SINGLE_BLOCK_LAYERS)
